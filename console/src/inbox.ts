// Inbox views served by the hub (GET /api/conversations, docs/api.md "Inbox views"): the
// row type, how pages change the view's state (pure, tested) and the one fetch.

export type InboxView = "queues" | "unassigned" | "closed" | "all";
export const INBOX_VIEWS: readonly InboxView[] = ["queues", "unassigned", "closed", "all"];

export interface InboxFilter {
  channel: string;
  queue: string;
  tag: string;
  tier: string;
}

export interface InboxRow {
  id: string;
  channel: string;
  inbox: string;
  status: string;
  queue: string;
  priority: string;
  assignee: string | null;
  subject: string | null;
  created_at: number;
  updated_at: number;
  tags: string[];
  customer: { id: string; name: string | null; customer_number: string | null; tier: string | null };
}

export interface InboxState {
  view: InboxView;
  filter: InboxFilter;
  rows: InboxRow[];
  next: string | null;
  status: "idle" | "loading" | "done" | "error";
  error: string | null;
  asked: string; // the request the rows answer (view + filters), to drop late pages
}

export const emptyInbox: InboxState = {
  view: "queues",
  filter: { channel: "", queue: "", tag: "", tier: "" },
  rows: [],
  next: null,
  status: "idle",
  error: null,
  asked: "",
};

/** The query string of a view with its filters (empty filters left out). */
export function requestOf(view: InboxView, filter: InboxFilter, cursor: string | null = null): string {
  const params = new URLSearchParams({ view });
  for (const [key, value] of Object.entries(filter)) if (value) params.set(key, value);
  if (cursor) params.set("cursor", cursor);
  return params.toString();
}

export function loading(inbox: InboxState, view: InboxView, filter: InboxFilter, more: boolean): InboxState {
  const asked = requestOf(view, filter);
  if (more && asked === inbox.asked) return { ...inbox, status: "loading", error: null };
  return { ...inbox, view, filter, rows: [], next: null, status: "loading", error: null, asked };
}

export function loaded(inbox: InboxState, asked: string, rows: InboxRow[], next: string | null, more: boolean): InboxState {
  if (asked !== inbox.asked) return inbox;
  const known = new Set(inbox.rows.map((r) => r.id));
  const merged = more ? [...inbox.rows, ...rows.filter((r) => !known.has(r.id))] : rows;
  return { ...inbox, rows: merged, next, status: "done", error: null };
}

export function refused(inbox: InboxState, asked: string, message: string): InboxState {
  return asked === inbox.asked ? { ...inbox, status: "error", error: message } : inbox;
}

export async function fetchInbox(
  view: InboxView,
  filter: InboxFilter,
  cursor: string | null,
): Promise<{ rows: InboxRow[]; next: string | null }> {
  const response = await fetch(`/api/conversations?${requestOf(view, filter, cursor)}`, {
    credentials: "same-origin",
  });
  const body = (await response.json().catch(() => ({}))) as {
    conversations?: InboxRow[];
    next_cursor?: string | null;
    message?: string;
  };
  if (!response.ok) throw new Error(body.message ?? `HTTP ${response.status}`);
  return { rows: body.conversations ?? [], next: body.next_cursor ?? null };
}
