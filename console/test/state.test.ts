/// <reference types="node" />
import assert from "node:assert/strict";
import { test } from "node:test";

import type { Conversation, Customer, Message, OfferView, ServerFrame } from "../src/protocol.gen";
import {
  activeEntry,
  attention,
  initialState,
  listed,
  reduce,
  remember,
  select,
  sortedOpen,
  step,
  titleFor,
  type State,
} from "../src/state";

const customer = (name: string | null, tier: string | null = null): Customer => ({
  id: `cust-${name}`,
  kind: "customer",
  known: true,
  customer_number: "K1",
  name,
  company: null,
  tier,
  tier_source: tier ? "computed" : null,
  crm_fetched_at: null,
  lifetime_value: 1200,
  revenue_window: 0,
  orders_12m: 2,
  last_order_at: null,
  days_since_last_order: null,
  last_purchase: null,
  payment_punctuality: null,
  overdue_invoices: 0,
  rfm: null,
  open_conversations: 1,
  tags: [],
  attributes: {},
  identities: [{ kind: "email", address: `${name}@example.com`, display_name: null }],
  history: [],
  computed_at: null,
});

const message = (id: string, direction: "inbound" | "outbound", text = id): Message => ({
  id,
  kind: "message",
  direction,
  author: direction === "outbound" ? "alice" : null,
  automatic: false,
  text,
  created_at: 100,
  delivery_status: direction === "outbound" ? "queued" : null,
});

const conversation = (id: string, extra: Partial<Conversation> = {}): Conversation => ({
  id,
  channel: "webchat",
  inbox: "webchat",
  status: "assigned",
  queue: "general",
  priority: "normal",
  assignee: "alice",
  subject: null,
  created_at: 10,
  sla_due_at: null,
  customer: customer(id),
  instructions: [],
  tags: [],
  rules: [],
  messages: [message(`${id}-m1`, "inbound")],
  ...extra,
});

const offer = (id: string): OfferView => ({
  conversation_id: id,
  expires_at: 130,
  channel: "email",
  inbox: "support",
  queue: "premium",
  priority: "high",
  sla_due_at: 3700,
  customer: customer("Anna", "A"),
  preview: "my parcel?",
  instructions: ["Greet by name"],
});

const hello: ServerFrame = {
  type: "hello",
  protocol: 1,
  agent: { id: "alice", name: "Alice", role: "agent", supervisor: false },
  dispositions: ["resolved", "escalated"],
  queues: ["general", "premium"],
  agents: [
    { id: "alice", name: "Alice" },
    { id: "bob", name: "Bob" },
  ],
  wrap_up: 30,
  canned: [],
};

function run(frames: ServerFrame[], now = 100, state: State = initialState(0)): State {
  return frames.reduce((s, f) => reduce(s, f, now), state);
}

test("a snapshot replaces the state and picks the first conversation", () => {
  const state = run([
    hello,
    { type: "snapshot", offers: [offer("o1")], conversations: [conversation("c1")], presence: "away" },
  ]);
  assert.equal(state.connection, "online");
  assert.equal(state.presence, "away");
  assert.equal(state.active, "c1");
  assert.deepEqual(Object.keys(state.open), ["c1"]);
  assert.equal(state.offers.length, 1);
  const again = reduce(state, { type: "snapshot", offers: [], conversations: [], presence: "away" }, 200);
  assert.deepEqual(again.open, {});
  assert.equal(again.offers.length, 0);
  assert.equal(again.active, null);
});

test("frames applied twice change nothing (resume after reconnect)", () => {
  const base = run([{ type: "snapshot", offers: [], conversations: [conversation("c1")], presence: "available" }]);
  const frame: ServerFrame = { type: "message", conversation_id: "c1", message: message("m2", "inbound") };
  const once = reduce(base, frame, 1);
  const twice = reduce(once, frame, 2);
  assert.equal(twice, once);
  assert.equal(once.open.c1.conversation.messages.length, 2);
  const offered = reduce(base, { type: "offer", ...offer("o1") }, 5);
  const offeredTwice = reduce(offered, { type: "offer", ...offer("o1") }, 6);
  assert.equal(offeredTwice.offers.length, 1);
});

test("unread counts grow for conversations not open on screen and reset on select", () => {
  let state = run([
    {
      type: "snapshot",
      offers: [],
      conversations: [conversation("c1"), conversation("c2")],
      presence: "available",
    },
  ]);
  assert.equal(state.active, "c1");
  state = reduce(state, { type: "message", conversation_id: "c2", message: message("x", "inbound") }, 1);
  state = reduce(state, { type: "message", conversation_id: "c1", message: message("y", "inbound") }, 1);
  // our own outbound copies never count
  state = reduce(state, { type: "message", conversation_id: "c2", message: message("z", "outbound") }, 1);
  assert.equal(state.open.c2.unread, 1);
  assert.equal(state.open.c1.unread, 0);
  assert.equal(attention(state), 1);
  assert.equal(titleFor("channelhub", state), "(1) channelhub");
  state = select(state, "c2");
  assert.equal(state.open.c2.unread, 0);
  assert.equal(titleFor("channelhub", state), "channelhub");
});

test("the title counts offers too", () => {
  const state = run([{ type: "offer", ...offer("o1") }, { type: "offer", ...offer("o2") }]);
  assert.equal(titleFor("channelhub", state), "(2) channelhub");
  const revoked = reduce(state, { type: "offer_revoked", conversation_id: "o1", reason: "timeout" }, 1);
  assert.equal(titleFor("channelhub", revoked), "(1) channelhub");
});

test("accepting turns the offer into an open, active conversation", () => {
  let state = run([{ type: "offer", ...offer("o1") }]);
  state = reduce(state, { type: "conversation", conversation: conversation("o1") }, 2);
  assert.equal(state.offers.length, 0);
  assert.equal(state.active, "o1");
  assert.equal(activeEntry(state)?.closedAt, null);
});

test("closing keeps the conversation on screen read-only, in the closed view, and starts wrap-up", () => {
  let state = run([hello, { type: "snapshot", offers: [], conversations: [conversation("c1")], presence: "available" }]);
  state = reduce(state, { type: "conversation_closed", conversation_id: "c1", disposition: "resolved" }, 500);
  assert.deepEqual(state.open, {});
  assert.equal(state.closed[0].conversation.id, "c1");
  assert.equal(state.closed[0].closedAt, 500);
  assert.deepEqual(state.closed[0].events, [{ at: 500, kind: "closed", detail: "resolved" }]);
  assert.equal(activeEntry(state)?.conversation.id, "c1");
  assert.equal(state.wrapUpUntil, 530);
  state = { ...state, view: "closed" };
  assert.deepEqual(listed(state).map((e) => e.conversation.id), ["c1"]);
  // accepted again later (the customer wrote back): open again, not closed
  state = reduce(state, { type: "conversation", conversation: conversation("c1") }, 600);
  assert.equal(state.closed.length, 0);
  assert.equal(state.view, "mine");
});

test("a transfer or reassignment removes the conversation with the reason as an event", () => {
  let state = run([{ type: "snapshot", offers: [], conversations: [conversation("c1")], presence: "available" }]);
  state = reduce(state, { type: "conversation_removed", conversation_id: "c1", reason: "transferred" }, 9);
  assert.equal(state.closed[0].events[0].detail, "transferred");
  assert.equal(state.wrapUpUntil, null);
});

test("replies stay pending until acknowledged; errors other than unavailable drop them", () => {
  let state = run([{ type: "snapshot", offers: [], conversations: [conversation("c1")], presence: "available" }]);
  state = remember(state, { type: "reply", conversation_id: "c1", client_id: "r1", text: "hi" });
  state = remember(state, { type: "note", conversation_id: "c1", client_id: "r2", text: "psst" });
  state = reduce(state, { type: "error", code: "unavailable", message: "retry", ref: "r1" }, 1);
  assert.deepEqual(Object.keys(state.pending).sort(), ["r1", "r2"]);
  state = reduce(state, { type: "error", code: "too_long", message: "no", ref: "r2" }, 1);
  assert.deepEqual(Object.keys(state.pending), ["r1"]);
  const stored = { ...message("m9", "outbound", "hi"), attachments: [] };
  state = reduce(state, { type: "reply_ack", client_id: "r1", conversation_id: "c1", duplicate: false, message: stored }, 2);
  assert.deepEqual(state.pending, {});
  assert.equal(state.open.c1.conversation.messages.at(-1)?.text, "hi");
});

test("the acknowledgement replaces a shorter live copy of the same message", () => {
  let state = run([{ type: "snapshot", offers: [], conversations: [conversation("c1")], presence: "available" }]);
  state = reduce(state, { type: "message", conversation_id: "c1", message: message("m9", "outbound", "file") }, 1);
  state = reduce(state, { type: "delivery", conversation_id: "c1", message_id: "m9", status: "sent", error: null }, 2);
  const file = { id: "a1", name: "x.pdf", content_type: "application/pdf", size: 5, sha256: "0" };
  const stored = { ...message("m9", "outbound", "file"), attachments: [file] };
  state = reduce(state, { type: "reply_ack", client_id: "r", conversation_id: "c1", duplicate: false, message: stored }, 3);
  const shown = state.open.c1.conversation.messages.find((m) => m.id === "m9");
  assert.equal(shown?.attachments?.length, 1);
  assert.equal(shown?.delivery_status, "sent"); // what the channel reported is kept
});

test("delivery updates change only the message named", () => {
  let state = run([
    {
      type: "snapshot",
      offers: [],
      conversations: [conversation("c1", { messages: [message("a", "outbound"), message("b", "outbound")] })],
      presence: "available",
    },
  ]);
  state = reduce(state, { type: "delivery", conversation_id: "c1", message_id: "b", status: "failed", error: "bounced" }, 1);
  const [a, b] = state.open.c1.conversation.messages;
  assert.equal(a.delivery_status, "queued");
  assert.equal(b.delivery_status, "failed");
  assert.equal(b.delivery_error, "bounced");
  // unknown conversations are ignored
  assert.equal(reduce(state, { type: "delivery", conversation_id: "zz", message_id: "b", status: "x", error: null }, 1), state);
});

test("the list puts urgent work and the nearest SLA first, and filters", () => {
  const open = {
    a: conversation("a", { priority: "normal", created_at: 1 }),
    b: conversation("b", { priority: "urgent", created_at: 5 }),
    c: conversation("c", { priority: "normal", created_at: 2, sla_due_at: 50 }),
    d: conversation("d", { priority: "low", created_at: 0, channel: "email", queue: "premium" }),
  };
  let state = run([{ type: "snapshot", offers: [], conversations: Object.values(open), presence: "available" }]);
  assert.deepEqual(sortedOpen(state.open).map((e) => e.conversation.id), ["b", "c", "a", "d"]);
  state = { ...state, filter: { text: "", channel: "email", queue: "" } };
  assert.deepEqual(listed(state).map((e) => e.conversation.id), ["d"]);
  state = { ...state, filter: { text: "A-M1", channel: "", queue: "" } }; // message text, any case
  assert.deepEqual(listed(state).map((e) => e.conversation.id), ["a"]);
  state = { ...state, filter: { text: "", channel: "", queue: "premium" } };
  assert.deepEqual(listed(state).map((e) => e.conversation.id), ["d"]);
});

test("next and previous wrap around the list", () => {
  let state = run([
    {
      type: "snapshot",
      offers: [],
      conversations: [conversation("a", { created_at: 1 }), conversation("b", { created_at: 2 })],
      presence: "available",
    },
  ]);
  assert.equal(state.active, "a");
  assert.equal(step(state, 1), "b");
  state = select(state, "b");
  assert.equal(step(state, 1), "a");
  assert.equal(step(state, -1), "a");
  assert.equal(step({ ...state, open: {} }, 1), null);
});

test("presence changes record since when", () => {
  let state = run([{ type: "snapshot", offers: [], conversations: [], presence: "available" }], 10);
  state = reduce(state, { type: "presence", status: "away" }, 50);
  assert.equal(state.presence, "away");
  assert.equal(state.presenceSince, 50);
  state = reduce(state, { type: "presence", status: "away" }, 70);
  assert.equal(state.presenceSince, 50);
});

test("queue_state feeds the board; previews only for the open conversation", () => {
  let state = run([{ type: "snapshot", offers: [], conversations: [conversation("c1")], presence: "available" }]);
  state = reduce(state, { type: "queue_state", queues: [{ name: "general", waiting: 2, offered: 1, oldest_wait: 30, sla_at_risk: 1 }], agents: [] }, 1);
  assert.equal(state.board?.queues[0].waiting, 2);
  state = reduce(state, { type: "preview", conversation_id: "zz", characters: 3 }, 1);
  assert.equal(state.draftCost, null);
  state = reduce(state, { type: "preview", conversation_id: "c1", characters: 3, segments: 1, encoding: "GSM-7" }, 1);
  assert.equal(state.draftCost?.segments, 1);
});
