/// <reference types="node" />
import assert from "node:assert/strict";
import { test } from "node:test";

import { expand, insert, matching, slashToken, variablesFor } from "../src/canned";
import type { CannedText, Conversation } from "../src/protocol.gen";

const all: CannedText[] = [
  { name: "thanks", text: "Thank you, {customer.name}.", queues: [] },
  { name: "parcel-late", text: "Your order from {customer.last_order} is late.", queues: ["general"] },
  { name: "refund", text: "Refund for {customer.number}", queues: ["billing"] },
  { name: "late-fee", text: "x", queues: [] },
];

test("the slash word before the caret", () => {
  assert.deepEqual(slashToken("/th", 3), { start: 0, query: "th" });
  assert.deepEqual(slashToken("Hello /par", 10), { start: 6, query: "par" });
  assert.deepEqual(slashToken("/", 1), { start: 0, query: "" });
  assert.equal(slashToken("a/b", 3), null); // inside a word: a path, a date
  assert.equal(slashToken("/thanks done", 12), null);
  assert.equal(slashToken("http://x", 8), null);
});

test("only the queue's and the global responses, prefix matches first", () => {
  assert.deepEqual(matching(all, "general", "").map((c) => c.name), ["thanks", "parcel-late", "late-fee"]);
  assert.deepEqual(matching(all, "billing", "").map((c) => c.name), ["thanks", "refund", "late-fee"]);
  assert.deepEqual(matching(all, "general", "late").map((c) => c.name), ["late-fee", "parcel-late"]);
  assert.deepEqual(matching(all, "general", "zzz"), []);
});

test("variables come from the conversation; markup stays text", () => {
  const conversation = {
    customer: {
      name: "<b>Anna</b>",
      customer_number: "K1",
      company: null,
      last_purchase: null,
      last_order_at: 86400,
      identities: [],
    },
  } as unknown as Conversation;
  const vars = variablesFor(conversation, "Alice", (at) => `day ${at / 86400}`);
  assert.equal(expand(all[0].text, vars), "Thank you, <b>Anna</b>.");
  assert.equal(expand(all[1].text, vars), "Your order from day 1 is late.");
  assert.equal(expand("{customer.company}|{unknown.thing}", vars), "|{unknown.thing}");
});

test("inserting replaces the slash word and moves the caret after it", () => {
  assert.deepEqual(insert("Hi /th and", 3, 6, "Thanks!"), { text: "Hi Thanks! and", caret: 10 });
});
