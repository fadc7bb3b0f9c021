// The timeline's order and the words for the hub's audit events (pure, tested).
import type { Translator } from "./i18n";
import type { Message, TimelineEvent } from "./protocol.gen";

export type Item = { kind: "message"; at: number; message: Message } | { kind: "audit"; at: number; event: TimelineEvent };

/** Messages and audit events in time order (a message before an event of the same time). */
export function merged(messages: Message[], events: TimelineEvent[] | undefined): Item[] {
  const items: Item[] = messages.map((message) => ({ kind: "message", at: message.created_at, message }));
  for (const event of events ?? []) items.push({ kind: "audit", at: event.at, event });
  // a stable sort keeps messages in their own order when times tie
  return items
    .map((item, index) => ({ item, index }))
    .sort(
      (a, b) =>
        a.item.at - b.item.at ||
        (a.item.kind === b.item.kind ? a.index - b.index : a.item.kind === "message" ? -1 : 1),
    )
    .map(({ item }) => item);
}

const text = (value: unknown): string =>
  Array.isArray(value) ? value.map(String).join(", ") : value === null || value === undefined ? "" : String(value);

/** One audit event as a line; ``name`` turns an agent id into the colleague's name. */
export function auditLine(event: TimelineEvent, t: Translator, name: (id: string | null) => string): string {
  const data = event.data;
  const key = `audit.${event.kind}`;
  const target = data.to_agent ? name(text(data.to_agent)) : text(data.queue);
  const line = t.t(key as "audit.offer.sent", {
    agent: name(event.agent),
    queue: text(data.queue),
    target,
    reason: text(data.reason),
    disposition: text(data.disposition),
    address: text(data.address),
    priority: text(data.priority),
  });
  const parts = [line === key ? event.kind : line];
  if (Array.isArray(data.rules) && data.rules.length) parts.push(t.t("audit.rules", { rules: text(data.rules) }));
  if (data.note) parts.push(`„${text(data.note)}“`);
  return parts.join(" · ");
}
