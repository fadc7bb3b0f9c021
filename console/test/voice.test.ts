/// <reference types="node" />
import assert from "node:assert/strict";
import { test } from "node:test";

import type { CallItem, Conversation, OfferView, ServerFrame } from "../src/protocol.gen";
import { initialState, reduce, type State } from "../src/state";
import { canCallBack, clock, connected, describe, onHold, recordings, ringing } from "../src/voice";

const call = (state: string, extra: Partial<CallItem> = {}): CallItem => ({
  call_sid: "CA1",
  state,
  at: 100,
  agent: null,
  duration: null,
  detail: null,
  ...extra,
});

const conversation = (extra: Partial<Conversation> = {}): Conversation =>
  ({
    id: "c1",
    channel: "voice",
    inbox: "phone",
    status: "assigned",
    queue: "general",
    priority: "normal",
    assignee: "alice",
    subject: null,
    created_at: 10,
    sla_due_at: null,
    customer: { history: [], identities: [] },
    instructions: [],
    tags: [],
    rules: [],
    messages: [],
    ...extra,
  }) as unknown as Conversation;

function holding(c: Conversation): State {
  const state = initialState(0);
  return reduce(state, { type: "conversation", conversation: c } as ServerFrame, 1);
}

test("a call frame joins the held conversation's calls once", () => {
  let state = holding(conversation());
  const frame = { type: "call", conversation_id: "c1", call: call("answered", { agent: "alice" }) };
  state = reduce(state, frame as ServerFrame, 2);
  const again = reduce(state, frame as ServerFrame, 3);
  assert.equal(again, state);
  assert.deepEqual(
    state.open.c1.conversation.calls?.map((c) => c.state),
    ["answered"],
  );
  const other = { type: "call", conversation_id: "nope", call: call("ended") };
  assert.equal(reduce(state, other as ServerFrame, 4), state);
});

test("call events in words", () => {
  const names = (id: string) => ({ alice: "Alice" })[id] ?? id;
  assert.equal(describe("en", call("answered", { agent: "alice" }), names), "answered by Alice");
  assert.equal(describe("de", call("ended", { duration: 75 }), names), "beendet nach 1:15");
  assert.equal(
    describe("en", call("failed", { detail: "nobody answered" }), names),
    "failed — nobody answered",
  );
  assert.equal(describe("en", call("something-new"), names), "something-new");
  assert.equal(clock(null), "0:00");
});

test("the screen pop rings for voice offers only; recordings and call back", () => {
  const offer = (channel: string) => ({ conversation_id: channel, channel }) as OfferView;
  assert.equal(ringing([offer("sms")]), null);
  assert.equal(ringing([offer("sms"), offer("voice")])?.conversation_id, "voice");
  const withAudio = conversation({
    messages: [
      { id: "m1", attachments: [{ content_type: "audio/x-wav" }] },
      { id: "m2", attachments: [] },
    ] as unknown as Conversation["messages"],
  });
  assert.deepEqual(
    recordings(withAudio).map((m) => m.id),
    ["m1"],
  );
  assert.equal(canCallBack(conversation()), true);
  assert.equal(canCallBack(conversation({ channel: "sms" })), false);
});

test("hold is offered while an agent is on the call", () => {
  assert.equal(connected(conversation()), false);
  const answered = conversation({ calls: [call("ringing"), call("answered", { agent: "alice" })] });
  assert.equal(connected(answered), true);
  assert.equal(onHold(answered), false);
  const held = conversation({ calls: [...(answered.calls ?? []), call("held")] });
  assert.equal(onHold(held), true);
  assert.equal(connected(held), true);
  const over = conversation({ calls: [...(held.calls ?? []), call("ended", { duration: 3 })] });
  assert.equal(connected(over), false);
});
