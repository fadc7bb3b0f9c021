// What this browser remembers for the agent: language, sound, desktop alerts.
import { pickLanguage, type Lang } from "./i18n";

const KEY = "channelhub:console:";

function read(name: string): string | null {
  try {
    return localStorage.getItem(KEY + name);
  } catch {
    return null;
  }
}

function write(name: string, value: string): void {
  try {
    localStorage.setItem(KEY + name, value);
  } catch {
    // private mode: the setting lasts for this page only
  }
}

export function savedLanguage(): Lang {
  return pickLanguage(read("lang"), navigator.languages ?? [navigator.language]);
}

export function saveLanguage(lang: Lang): void {
  write("lang", lang);
}

export function soundOn(): boolean {
  return read("sound") !== "off";
}

export function saveSound(on: boolean): void {
  write("sound", on ? "on" : "off");
}
