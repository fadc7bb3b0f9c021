// Canned responses: typing "/" and a name in the reply box offers the matching prepared
// answers of the conversation's queue; picking one replaces "/name" with its text, the
// variables filled in from the conversation. Pure, so node's test runner covers it.
import type { CannedText, Conversation } from "./protocol.gen";

/** The "/word" being typed just before the caret, with where it starts; null if none. */
export function slashToken(text: string, caret: number): { start: number; query: string } | null {
  const before = text.slice(0, caret);
  const match = /(^|\s)\/([a-z0-9-]*)$/.exec(before);
  if (!match) return null;
  return { start: before.length - match[2].length - 1, query: match[2] };
}

/** The responses usable in ``queue`` whose name starts with (then contains) ``query``. */
export function matching(all: readonly CannedText[], queue: string, query: string): CannedText[] {
  const usable = all.filter((c) => !c.queues.length || c.queues.includes(queue));
  const starts = usable.filter((c) => c.name.startsWith(query));
  const contains = usable.filter((c) => !c.name.startsWith(query) && c.name.includes(query));
  return [...starts, ...contains].slice(0, 8);
}

export interface Variables {
  [name: string]: string;
}

export function variablesFor(
  conversation: Conversation,
  agentName: string,
  date: (epochSeconds: number) => string,
): Variables {
  const customer = conversation.customer;
  const first = customer.identities[0];
  return {
    "customer.name": customer.name ?? first?.display_name ?? "",
    "customer.number": customer.customer_number ?? "",
    "customer.company": customer.company ?? "",
    "customer.last_purchase": customer.last_purchase ?? "",
    "customer.last_order": customer.last_order_at ? date(customer.last_order_at) : "",
    "agent.name": agentName,
  };
}

/** ``{customer.name}`` and the like filled in; unknown names are left as written. */
export function expand(text: string, variables: Variables): string {
  return text.replace(/\{([a-z_.]+)\}/g, (whole, name: string) =>
    name in variables ? variables[name] : whole,
  );
}

/** The draft with the "/word" at ``start`` replaced by ``insert``; and the new caret. */
export function insert(
  text: string,
  start: number,
  caret: number,
  inserted: string,
): { text: string; caret: number } {
  const next = text.slice(0, start) + inserted + text.slice(caret);
  return { text: next, caret: start + inserted.length };
}
