import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { connect, disconnect, send } from "../connection";
import { I18n } from "../context";
import { translator, type Lang } from "../i18n";
import { saveLanguage, saveSound, savedLanguage, soundOn } from "../settings";
import { commandFor, type Command } from "../shortcuts";
import { activeEntry, select, step, titleFor, type View } from "../state";
import { store, useStore } from "../store";
import { Board } from "./Board";
import { ConversationPane } from "./ConversationPane";
import { HelpDialog } from "./Dialogs";
import { Login } from "./Login";
import { Sidebar } from "./Sidebar";
import { TopBar } from "./TopBar";
import { ScreenPop } from "./Voice";

type Gate = "checking" | "login" | "app";

const VIEWS: Record<string, View> = {
  "view-mine": "mine",
  "view-offers": "offers",
  "view-closed": "closed",
  "view-board": "board",
};

function inField(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  const tag = target.tagName;
  return (
    tag === "INPUT" ||
    tag === "TEXTAREA" ||
    tag === "SELECT" ||
    target.isContentEditable ||
    target.closest("dialog") !== null
  );
}

export function App() {
  const state = useStore();
  const [gate, setGate] = useState<Gate>("checking");
  const [lang, setLang] = useState<Lang>(savedLanguage());
  const [sound, setSound] = useState(soundOn());
  const [help, setHelp] = useState(false);
  const [transfer, setTransfer] = useState(false);
  const t = useMemo(() => translator(lang), [lang]);
  const soundRef = useRef(sound);
  soundRef.current = sound;
  const tRef = useRef(t);
  tRef.current = t;

  const start = () => {
    setGate("app");
    connect(
      { sound: () => soundRef.current, translator: () => tRef.current },
      () => setGate("login"),
    );
  };

  useEffect(() => {
    fetch("/api/me", { credentials: "same-origin" })
      .then((response) => (response.ok ? start() : setGate("login")))
      .catch(() => setGate("login"));
  }, []);

  useEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);

  useEffect(() => {
    document.title = titleFor(t.t("app.title"), state);
  }, [state, t]);

  const run = (command: Command) => {
    const current = store.get();
    const entry = activeEntry(current);
    const held = entry && entry.closedAt === null ? entry.conversation.id : null;
    switch (command) {
      case "help":
        setHelp(true);
        return;
      case "escape":
        setHelp(false);
        setTransfer(false);
        (document.activeElement as HTMLElement | null)?.blur();
        return;
      case "next":
      case "previous": {
        const id = step(current, command === "next" ? 1 : -1);
        if (id) store.set(select(current, id));
        focusSelected();
        return;
      }
      case "accept":
      case "decline": {
        const offer = current.offers[0];
        if (!offer) return;
        if (command === "accept") send({ type: "accept", conversation_id: offer.conversation_id });
        else send({ type: "decline", conversation_id: offer.conversation_id, reason: "" });
        return;
      }
      case "reply":
      case "note":
        if (!held) return;
        focusComposer(command === "note");
        return;
      case "close":
        if (held) document.getElementById("disposition")?.focus();
        return;
      case "transfer":
        if (held) setTransfer(true);
        return;
      case "filter":
        document.getElementById("filter")?.focus();
        return;
      default: {
        const view = VIEWS[command];
        if (view && (view !== "board" || current.hello?.agent.supervisor)) {
          store.set({ ...current, view });
        }
      }
    }
  };

  useEffect(() => {
    if (gate !== "app") return undefined;
    const onKey = (event: KeyboardEvent) => {
      const command = commandFor({
        key: event.key,
        ctrlKey: event.ctrlKey,
        metaKey: event.metaKey,
        altKey: event.altKey,
        inField: inField(event.target),
      });
      if (command === null) return;
      if (command === "escape" && !inField(event.target) && !help && !transfer) return;
      event.preventDefault();
      run(command);
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [gate, help, transfer]);

  const changeLang = (next: Lang) => {
    saveLanguage(next);
    setLang(next);
  };
  const changeSound = (on: boolean) => {
    saveSound(on);
    setSound(on);
  };
  const logout = () => {
    disconnect();
    fetch("/api/logout", { method: "POST", credentials: "same-origin" }).finally(() => {
      setGate("login");
    });
  };

  const entry = activeEntry(state);
  const detail = state.view === "board" || entry !== null;
  return (
    <I18n.Provider value={t}>
      <Login hidden={gate !== "login"} onLoggedIn={start} lang={lang} onLang={changeLang} />
      <div id="app" hidden={gate !== "app"}>
        <TopBar
          state={state}
          sound={sound}
          onSound={changeSound}
          lang={lang}
          onLang={changeLang}
          onHelp={() => setHelp(true)}
          onLogout={logout}
        />
        <div class={`workspace ${detail ? "show-detail" : "show-list"}`}>
          <Sidebar state={state} />
          {state.view === "board" && state.hello?.agent.supervisor ? (
            <Board state={state} />
          ) : (
            <ConversationPane
              state={state}
              entry={entry}
              transferOpen={transfer}
              onTransfer={setTransfer}
            />
          )}
        </div>
        <ScreenPop state={state} />
        <p id="errors" class="error" role="alert">
          {state.error ?? ""}
        </p>
      </div>
      {help && <HelpDialog onClose={() => setHelp(false)} />}
    </I18n.Provider>
  );
}

function focusSelected(): void {
  requestAnimationFrame(() => {
    document.querySelector<HTMLElement>("#conversations [aria-current='true']")?.focus();
  });
}

export function focusComposer(note: boolean): void {
  const box = document.getElementById("reply-note") as HTMLInputElement | null;
  if (box && box.checked !== note) box.click();
  requestAnimationFrame(() => document.getElementById("reply-text")?.focus());
}
