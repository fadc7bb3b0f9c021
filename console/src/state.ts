// The console's state and how server frames change it. Pure: no DOM, no socket, no clock
// (``now`` is passed in), so node's test runner covers it. After every (re)connect the
// snapshot replaces what the server owns; later frames name things by id, so applying one
// twice changes nothing (docs/agent-protocol.md, "Resume after reconnect").

import type {
  ClientFrame,
  Conversation,
  Customer,
  HelloFrame,
  Message,
  OfferView,
  PreviewFrame,
  QueueStateFrame,
  ServerFrame,
} from "./protocol.gen";
import { withCall } from "./voice";

export type View = "mine" | "offers" | "closed" | "board";
export type Presence = "available" | "busy" | "away";
export type Connection = "connecting" | "online" | "offline";

/** Something that happened to a conversation, shown in its timeline between messages. */
export interface TimelineEvent {
  at: number;
  kind: "closed" | "removed";
  detail: string;
}

export interface Entry {
  conversation: Conversation;
  unread: number;
  events: TimelineEvent[];
  closedAt: number | null; // set once it is closed or no longer ours: read-only from then on
}

export interface Filter {
  text: string;
  channel: string;
  queue: string;
}

export interface State {
  hello: HelloFrame | null;
  connection: Connection;
  presence: Presence;
  presenceSince: number;
  offers: OfferView[]; // in arrival order
  offerSeenAt: Record<string, number>;
  open: Record<string, Entry>; // the conversations this agent holds
  closed: Entry[]; // closed or handed on in this session, newest first
  active: string | null;
  view: View;
  filter: Filter;
  pending: Record<string, ClientFrame>; // replies and notes not yet acknowledged
  board: QueueStateFrame | null;
  error: string | null;
  notice: string | null;
  draftCost: PreviewFrame | null;
  wrapUpUntil: number | null;
}

export const MAX_CLOSED = 50;

export function initialState(now: number): State {
  return {
    hello: null,
    connection: "connecting",
    presence: "available",
    presenceSince: now,
    offers: [],
    offerSeenAt: {},
    open: {},
    closed: [],
    active: null,
    view: "mine",
    filter: { text: "", channel: "", queue: "" },
    pending: {},
    board: null,
    error: null,
    notice: null,
    draftCost: null,
    wrapUpUntil: null,
  };
}

function entry(conversation: Conversation, previous?: Entry): Entry {
  return {
    conversation,
    unread: previous?.unread ?? 0,
    events: previous?.events ?? [],
    closedAt: null,
  };
}

function withMessage(conversation: Conversation, message: Message, replace: boolean): Conversation {
  const at = conversation.messages.findIndex((m) => m.id === message.id);
  if (at === -1) return { ...conversation, messages: [...conversation.messages, message] };
  if (!replace) return conversation;
  // the acknowledgement is the stored message (its files included); a live copy may be shorter
  const messages = conversation.messages.slice();
  messages[at] = { ...message, delivery_status: messages[at].delivery_status ?? message.delivery_status };
  return { ...conversation, messages };
}

/** The first open conversation in list order (after one was closed or handed on). */
function firstOpen(open: Record<string, Entry>): string | null {
  return sortedOpen(open)[0]?.conversation.id ?? null;
}

function retire(state: State, id: string, event: TimelineEvent): State {
  const held = state.open[id];
  if (!held) return state;
  const open = { ...state.open };
  delete open[id];
  const retired: Entry = { ...held, unread: 0, events: [...held.events, event], closedAt: event.at };
  const closed = [retired, ...state.closed.filter((e) => e.conversation.id !== id)].slice(
    0,
    MAX_CLOSED,
  );
  // a conversation being read stays on screen, now read-only
  return { ...state, open, closed };
}

/** Apply one server frame. */
export function reduce(state: State, frame: ServerFrame, now: number): State {
  switch (frame.type) {
    case "hello":
      return { ...state, hello: frame, error: null };
    case "snapshot": {
      const open: Record<string, Entry> = {};
      for (const conversation of frame.conversations) {
        open[conversation.id] = entry(conversation, state.open[conversation.id]);
      }
      const offerSeenAt: Record<string, number> = {};
      for (const offer of frame.offers) {
        offerSeenAt[offer.conversation_id] = state.offerSeenAt[offer.conversation_id] ?? now;
      }
      const keep =
        state.active !== null &&
        (open[state.active] || state.closed.some((e) => e.conversation.id === state.active));
      return {
        ...state,
        open,
        offers: frame.offers,
        offerSeenAt,
        presence: frame.presence,
        presenceSince: frame.presence === state.presence ? state.presenceSince : now,
        active: keep ? state.active : firstOpen(open),
        connection: "online",
      };
    }
    case "offer": {
      const { type: _type, ...offer } = frame;
      const offers = state.offers.filter((o) => o.conversation_id !== offer.conversation_id);
      return {
        ...state,
        offers: [...offers, offer],
        offerSeenAt: { ...state.offerSeenAt, [offer.conversation_id]: now },
      };
    }
    case "offer_revoked":
      return {
        ...state,
        offers: state.offers.filter((o) => o.conversation_id !== frame.conversation_id),
      };
    case "conversation": {
      const conversation = frame.conversation;
      return {
        ...state,
        offers: state.offers.filter((o) => o.conversation_id !== conversation.id),
        open: { ...state.open, [conversation.id]: entry(conversation, state.open[conversation.id]) },
        closed: state.closed.filter((e) => e.conversation.id !== conversation.id),
        active: conversation.id,
        view: state.view === "board" || state.view === "closed" ? "mine" : state.view,
      };
    }
    case "message":
      return addMessage(state, frame.conversation_id, frame.message, true);
    case "reply_ack": {
      const pending = { ...state.pending };
      delete pending[frame.client_id];
      return addMessage({ ...state, pending }, frame.conversation_id, frame.message, false);
    }
    case "delivery": {
      const held = state.open[frame.conversation_id];
      if (!held) return state;
      const messages = held.conversation.messages.map((m) =>
        m.id === frame.message_id
          ? { ...m, delivery_status: frame.status, delivery_error: frame.error }
          : m,
      );
      return {
        ...state,
        open: {
          ...state.open,
          [frame.conversation_id]: { ...held, conversation: { ...held.conversation, messages } },
        },
      };
    }
    case "conversation_closed": {
      const wrap = state.hello?.wrap_up ?? 0;
      const next = retire(state, frame.conversation_id, {
        at: now,
        kind: "closed",
        detail: frame.disposition,
      });
      return { ...next, wrapUpUntil: wrap > 0 ? now + wrap : state.wrapUpUntil };
    }
    case "conversation_removed":
      return retire(state, frame.conversation_id, {
        at: now,
        kind: "removed",
        detail: frame.reason,
      });
    case "reassigned":
      return { ...state, notice: `${frame.conversation_id} → ${frame.agent}` };
    case "presence":
      return {
        ...state,
        presence: frame.status,
        presenceSince: frame.status === state.presence ? state.presenceSince : now,
      };
    case "queue_state":
      return { ...state, board: frame };
    case "preview":
      return frame.conversation_id === state.active ? { ...state, draftCost: frame } : state;
    case "error": {
      const pending = { ...state.pending };
      // "unavailable" means try again: the frame stays pending and is resent on reconnect
      if (frame.ref && frame.code !== "unavailable") delete pending[frame.ref];
      return { ...state, pending, error: frame.message };
    }
    case "call":
      return withCall(state, frame);
    case "pong":
      return state;
  }
}

function addMessage(state: State, id: string, message: Message, live: boolean): State {
  const held = state.open[id];
  if (!held) return state;
  const conversation = withMessage(held.conversation, message, !live);
  if (conversation === held.conversation) return state;
  const unseen = live && message.direction === "inbound" && state.active !== id;
  return {
    ...state,
    open: {
      ...state.open,
      [id]: { ...held, conversation, unread: held.unread + (unseen ? 1 : 0) },
    },
  };
}

/** Open a conversation (from the list, a shortcut or a past conversation's link). */
export function select(state: State, id: string | null): State {
  if (id === null) return { ...state, active: null, draftCost: null };
  const held = state.open[id];
  const open = held && held.unread ? { ...state.open, [id]: { ...held, unread: 0 } } : state.open;
  const view: View = state.open[id] ? "mine" : state.closed.some((e) => e.conversation.id === id)
    ? "closed"
    : state.view;
  return { ...state, open, active: id, draftCost: null, view };
}

export function remember(state: State, frame: ClientFrame & { client_id: string }): State {
  return { ...state, pending: { ...state.pending, [frame.client_id]: frame } };
}

export function sortedOpen(open: Record<string, Entry>): Entry[] {
  // the most urgent first: priority, then the SLA due soonest, then the oldest
  const rank = { urgent: 0, high: 1, normal: 2, low: 3 } as const;
  return Object.values(open).sort((a, b) => {
    const ca = a.conversation;
    const cb = b.conversation;
    return (
      rank[ca.priority] - rank[cb.priority] ||
      (ca.sla_due_at ?? Infinity) - (cb.sla_due_at ?? Infinity) ||
      ca.created_at - cb.created_at ||
      (ca.id < cb.id ? -1 : ca.id > cb.id ? 1 : 0)
    );
  });
}

export function customerLabel(customer: Customer | null | undefined, fallback: string): string {
  if (!customer) return fallback;
  if (customer.name) return customer.name;
  const first = customer.identities[0];
  return first ? first.display_name || first.address : fallback;
}

function matches(conversation: Conversation, filter: Filter): boolean {
  if (filter.channel && conversation.channel !== filter.channel) return false;
  if (filter.queue && conversation.queue !== filter.queue) return false;
  const needle = filter.text.trim().toLowerCase();
  if (!needle) return true;
  const customer = conversation.customer;
  const haystack = [
    customer.name ?? "",
    customer.customer_number ?? "",
    customer.company ?? "",
    ...customer.identities.map((i) => i.address),
    conversation.subject ?? "",
    conversation.queue,
    conversation.channel,
    ...conversation.tags,
    ...conversation.messages.map((m) => m.text),
  ];
  return haystack.some((text) => text.toLowerCase().includes(needle));
}

/** The entries the list shows for the current view and filter. */
export function listed(state: State): Entry[] {
  const source = state.view === "closed" ? state.closed : sortedOpen(state.open);
  return source.filter((e) => matches(e.conversation, state.filter));
}

export function activeEntry(state: State): Entry | null {
  if (state.active === null) return null;
  return (
    state.open[state.active] ??
    state.closed.find((e) => e.conversation.id === state.active) ??
    null
  );
}

/** What the window title counts: offers waiting plus unread customer messages. */
export function attention(state: State): number {
  const unread = Object.values(state.open).reduce((sum, e) => sum + e.unread, 0);
  return state.offers.length + unread;
}

export function titleFor(base: string, state: State): string {
  const count = attention(state);
  return count ? `(${count}) ${base}` : base;
}

/** Seconds until ``at`` (negative once past), or null without a deadline. */
export function remaining(at: number | null | undefined, now: number): number | null {
  return at === null || at === undefined ? null : at - now;
}

/** The next or previous conversation of the list, wrapping around. */
export function step(state: State, delta: 1 | -1): string | null {
  const ids = listed(state).map((e) => e.conversation.id);
  if (!ids.length) return null;
  const at = state.active === null ? -1 : ids.indexOf(state.active);
  if (at === -1) return delta > 0 ? ids[0] : ids[ids.length - 1];
  return ids[(at + delta + ids.length) % ids.length];
}

export function channelsIn(state: State): string[] {
  const all = new Set<string>();
  for (const e of [...Object.values(state.open), ...state.closed]) {
    all.add(e.conversation.channel);
  }
  return [...all].sort();
}

export function pendingFrames(state: State): ClientFrame[] {
  return Object.values(state.pending);
}
