/// <reference types="node" />
import assert from "node:assert/strict";
import { test } from "node:test";

import { englishKeys, formatDuration, germanTable, pickLanguage, translator } from "../src/i18n";
import { commandFor, SHEET } from "../src/shortcuts";

const press = (key: string, extra: Partial<Parameters<typeof commandFor>[0]> = {}) =>
  commandFor({ key, ctrlKey: false, metaKey: false, altKey: false, inField: false, ...extra });

test("the language comes from the setting, then the browser, else English", () => {
  assert.equal(pickLanguage("de", ["en-US"]), "de");
  assert.equal(pickLanguage(null, ["fr-FR", "de-AT", "en"]), "de");
  assert.equal(pickLanguage("xx", ["en-GB"]), "en");
  assert.equal(pickLanguage(null, ["fr"]), "en");
  assert.equal(pickLanguage(null, []), "en");
});

test("every English text has a German one, with the same placeholders", () => {
  for (const key of englishKeys) {
    const en = translator("en").t(key);
    const de = germanTable[key];
    assert.ok(de, `no German for ${key}`);
    const names = (text: string) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    assert.deepEqual(names(de), names(en), key);
  }
});

test("placeholders are filled as text; unknown ones stay visible", () => {
  const t = translator("de");
  assert.equal(t.t("notify.offer", { who: "<b>Anna</b>" }), "Neues Gespräch: <b>Anna</b>");
  assert.equal(t.t("offer.expires"), "Angebot endet in {time}");
});

test("numbers, money and durations follow the language", () => {
  assert.equal(translator("de").money(1234.5).replace(/\s/g, " "), "1.234,50 €");
  assert.equal(translator("en").money(1234.5), "€1,234.50");
  assert.equal(formatDuration(42), "0:42");
  assert.equal(formatDuration(3723), "1:02:03");
  assert.equal(formatDuration(-5), "0:00");
});

test("shortcuts: keys outside fields, never while typing, Escape everywhere", () => {
  assert.equal(press("?"), "help");
  assert.equal(press("a"), "accept");
  assert.equal(press("j"), "next");
  assert.equal(press("ArrowDown", { altKey: true }), "next");
  assert.equal(press("a", { inField: true }), null);
  assert.equal(press("Escape", { inField: true }), "escape");
  assert.equal(press("r", { ctrlKey: true }), null);
  assert.equal(press("x"), null);
  // the sheet documents every key that does something
  assert.ok(SHEET.length >= 10);
});
