/// <reference types="node" />
import assert from "node:assert/strict";
import { test } from "node:test";

import { translator } from "../src/i18n";
import type { Conversation, Customer, Message, ServerFrame } from "../src/protocol.gen";
import { emptySearch, failed, received, searching, type SearchHit } from "../src/search";
import { activeEntry, initialState, reduce, select } from "../src/state";
import { auditLine, merged } from "../src/timeline";

const hit = (id: string, at: number): SearchHit => ({
  match: "message",
  at,
  conversation_id: `c-${id}`,
  message_id: id,
  message_kind: "message",
  author: null,
  snippet: `text ${id}`,
  channel: "webchat",
  inbox: "webchat",
  queue: "general",
  status: "closed",
  assignee: null,
  subject: null,
  customer: { id: "k", name: "Anna", customer_number: "K1" },
});

test("a first page replaces, a further page appends without repeats", () => {
  let search = searching(emptySearch, "paket", false);
  assert.equal(search.status, "loading");
  search = received(search, { query: "paket", terms: ["paket"], hits: [hit("a", 3), hit("b", 2)], next_cursor: "n1" }, false);
  assert.deepEqual(search.hits.map((h) => h.message_id), ["a", "b"]);
  assert.equal(search.next, "n1");
  search = searching(search, "paket", true);
  assert.equal(search.hits.length, 2); // kept while the next page loads
  search = received(search, { query: "paket", terms: [], hits: [hit("b", 2), hit("c", 1)], next_cursor: null }, true);
  assert.deepEqual(search.hits.map((h) => h.message_id), ["a", "b", "c"]);
  assert.equal(search.next, null);
  // a new query starts over; a late page of the old one is ignored
  const fresh = searching(search, "rechnung", false);
  assert.deepEqual(fresh.hits, []);
  assert.equal(received(fresh, { query: "paket", terms: [], hits: [hit("x", 9)], next_cursor: null }, false), fresh);
  assert.equal(failed(fresh, "rechnung", "q is empty").error, "q is empty");
  assert.equal(failed(fresh, "paket", "late"), fresh);
});

const customer = { id: "k", kind: "customer", known: true, customer_number: "K1", name: "Anna", company: null, tier: null, tier_source: null, crm_fetched_at: null, lifetime_value: 0, revenue_window: 0, orders_12m: 0, last_order_at: null, days_since_last_order: null, last_purchase: null, payment_punctuality: null, overdue_invoices: 0, rfm: null, open_conversations: 0, tags: [], attributes: {}, identities: [], history: [], computed_at: null } satisfies Customer;

const message = (id: string, at: number): Message => ({
  id, kind: "message", direction: "inbound", author: null, automatic: false, text: id, created_at: at, delivery_status: null,
});

const conversation = (id: string, extra: Partial<Conversation> = {}): Conversation => ({
  id, channel: "webchat", inbox: "webchat", status: "assigned", queue: "general", priority: "normal", assignee: "bob",
  subject: null, created_at: 1, sla_due_at: null, customer, instructions: [], tags: [], rules: [], messages: [message("m1", 5)],
  ...extra,
});

test("a read-only conversation is shown, never held, and leaves when it becomes ours", () => {
  let state = initialState(0);
  state = { ...state, view: "search" };
  const frame: ServerFrame = { type: "conversation", conversation: conversation("c1", { read_only: true, events: [] }) };
  state = reduce(state, frame, 50);
  assert.deepEqual(state.open, {});
  assert.equal(state.view, "search");
  const shown = activeEntry(state);
  assert.ok(shown && shown.closedAt === 50 && shown.conversation.read_only);
  // accepted later: held, in Mine, no longer the read-only copy
  state = reduce(state, { type: "conversation", conversation: conversation("c1", { assignee: "alice" }) }, 60);
  assert.equal(state.viewing, null);
  assert.ok(state.open.c1);
  assert.equal(state.view, "mine");
  assert.equal(activeEntry(state)?.closedAt, null);
});

test("the audit events of open survive a later frame without them", () => {
  let state = reduce(initialState(0), { type: "conversation", conversation: conversation("c1") }, 1);
  const events = [{ at: 2, kind: "conversation.assigned", agent: "alice", data: {} }];
  state = reduce(state, { type: "conversation", conversation: conversation("c1", { events }) }, 2);
  state = { ...select(state, "c1"), view: "search" };
  state = reduce(state, { type: "conversation", conversation: conversation("c1") }, 3);
  assert.deepEqual(state.open.c1.conversation.events, events);
  assert.equal(state.view, "search"); // a refresh of a held one leaves the view alone
});

test("the timeline interleaves messages and audit events by time", () => {
  const items = merged(
    [message("m1", 5), message("m2", 10)],
    [
      { at: 5, kind: "conversation.created", agent: null, data: { queue: "general", rules: ["vip"] } },
      { at: 7, kind: "conversation.transferred", agent: "alice", data: { queue: "billing", note: "bitte prüfen" } },
    ],
  );
  assert.deepEqual(items.map((i) => (i.kind === "message" ? i.message.id : i.event.kind)), [
    "m1", "conversation.created", "conversation.transferred", "m2",
  ]);
  const t = translator("en");
  const name = (id: string | null) => (id === "alice" ? "Alice" : id ?? "");
  const [, created, transferred] = items;
  assert.equal(created.kind === "audit" && auditLine(created.event, t, name), "Routed to general · rules: vip");
  assert.equal(
    transferred.kind === "audit" && auditLine(transferred.event, t, name),
    "Transferred by Alice to billing · „bitte prüfen“",
  );
  const unknown = { at: 1, kind: "something.new", agent: null, data: {} };
  assert.equal(auditLine(unknown, t, name), "something.new");
  assert.equal(auditLine(items[2].kind === "audit" ? items[2].event : unknown, translator("de"), name), "Von Alice weitergeleitet an billing · „bitte prüfen“");
});

import { emptyInbox, loaded, loading, refused, requestOf, type InboxRow } from "../src/inbox";

const row = (id: string): InboxRow => ({
  id, channel: "email", inbox: "support", status: "queued", queue: "general", priority: "normal", assignee: null,
  subject: null, created_at: 1, updated_at: 2, tags: [], customer: { id: "k", name: "Anna", customer_number: null, tier: "A" },
});

test("inbox pages: filters in the request, late pages of another request dropped", () => {
  const filter = { channel: "", queue: "billing", tag: "vip", tier: "" };
  assert.equal(requestOf("unassigned", filter), "view=unassigned&queue=billing&tag=vip");
  assert.equal(requestOf("all", emptyInbox.filter, "c1"), "view=all&cursor=c1");
  let inbox = loading(emptyInbox, "unassigned", filter, false);
  const asked = inbox.asked;
  inbox = loaded(inbox, asked, [row("a"), row("b")], "n", false);
  inbox = loading(inbox, "unassigned", filter, true);
  assert.equal(inbox.rows.length, 2);
  inbox = loaded(inbox, asked, [row("b"), row("c")], null, true);
  assert.deepEqual(inbox.rows.map((r) => r.id), ["a", "b", "c"]);
  const other = loading(inbox, "closed", filter, false);
  assert.deepEqual(other.rows, []);
  assert.equal(loaded(other, asked, [row("x")], null, false), other);
  assert.equal(refused(other, other.asked, "view must be one of").error, "view must be one of");
});

test("open's answer for a held conversation does not move the selection", () => {
  let state = reduce(initialState(0), { type: "conversation", conversation: conversation("c1") }, 1);
  state = reduce(state, { type: "conversation", conversation: conversation("c2") }, 2);
  assert.equal(state.active, "c2");
  state = reduce(state, { type: "conversation", conversation: conversation("c1", { events: [] }) }, 3);
  assert.equal(state.active, "c2");
});
