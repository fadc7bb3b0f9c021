// Keyboard shortcuts: which key does what (pure, tested) and the sheet `?` shows.
import type { Key } from "./i18n";

export type Command =
  | "help"
  | "next"
  | "previous"
  | "accept"
  | "decline"
  | "reply"
  | "note"
  | "close"
  | "transfer"
  | "filter"
  | "view-mine"
  | "view-offers"
  | "view-closed"
  | "view-board"
  | "view-search"
  | "view-inbox"
  | "escape";

const KEYS: Record<string, Command> = {
  "?": "help",
  j: "next",
  k: "previous",
  a: "accept",
  d: "decline",
  r: "reply",
  n: "note",
  c: "close",
  t: "transfer",
  "/": "filter",
  "1": "view-mine",
  "2": "view-offers",
  "3": "view-closed",
  "4": "view-board",
  "5": "view-search",
  "6": "view-inbox",
  Escape: "escape",
};

export interface KeyPress {
  key: string;
  ctrlKey: boolean;
  metaKey: boolean;
  altKey: boolean;
  inField: boolean; // focus is in a text field, a select or a dialog's control
}

/** The command a key press means, or null (typing in a field is never a shortcut). */
export function commandFor(press: KeyPress): Command | null {
  if (press.ctrlKey || press.metaKey) return null;
  if (press.altKey) {
    if (press.key === "ArrowDown") return "next";
    if (press.key === "ArrowUp") return "previous";
    return null;
  }
  if (press.inField) return press.key === "Escape" ? "escape" : null;
  return KEYS[press.key] ?? null;
}

/** The sheet's rows: keys as shown, and what they do. */
export const SHEET: readonly (readonly [string, Key])[] = [
  ["?", "shortcut.help"],
  ["j / Alt+↓", "shortcut.next"],
  ["k / Alt+↑", "shortcut.previous"],
  ["a", "shortcut.accept"],
  ["d", "shortcut.decline"],
  ["r", "shortcut.reply"],
  ["n", "shortcut.note"],
  ["t", "shortcut.transfer"],
  ["c", "shortcut.close"],
  ["/", "shortcut.filter"],
  ["1 2 3 4 5 6", "shortcut.views"],
  ["Esc", "shortcut.escape"],
];
