// Server-side search (GET /api/search, docs/api.md "Search"): the result types, how a page
// changes the search state (pure, tested) and the one fetch.

export interface SearchCustomer {
  id: string;
  name: string | null;
  customer_number: string | null;
}

export interface SearchHit {
  match: "message" | "customer";
  at: number;
  conversation_id: string;
  message_id: string | null;
  message_kind: "message" | "note" | null;
  author: string | null;
  snippet: string | null;
  channel: string;
  inbox: string;
  queue: string;
  status: string;
  assignee: string | null;
  subject: string | null;
  customer: SearchCustomer;
}

export interface SearchPage {
  query: string;
  terms: string[];
  hits: SearchHit[];
  next_cursor: string | null;
}

export interface SearchState {
  query: string; // what the results are for
  hits: SearchHit[];
  next: string | null; // cursor of the next page
  status: "idle" | "loading" | "done" | "error";
  error: string | null;
}

export const emptySearch: SearchState = {
  query: "",
  hits: [],
  next: null,
  status: "idle",
  error: null,
};

/** The search once a request for ``query`` (a first page, or ``more``) went out. */
export function searching(search: SearchState, query: string, more: boolean): SearchState {
  return more && query === search.query
    ? { ...search, status: "loading", error: null }
    : { query, hits: [], next: null, status: "loading", error: null };
}

/** A page arrived: the first replaces, a further one appends (a hit already shown is not
 * repeated); a page for a query no longer asked is ignored. */
export function received(search: SearchState, page: SearchPage, more: boolean): SearchState {
  if (page.query !== search.query) return search;
  const known = new Set(search.hits.map(hitKey));
  const hits = more ? [...search.hits, ...page.hits.filter((h) => !known.has(hitKey(h)))] : page.hits;
  return { ...search, hits, next: page.next_cursor, status: "done", error: null };
}

export function failed(search: SearchState, query: string, message: string): SearchState {
  return query === search.query ? { ...search, status: "error", error: message } : search;
}

export function hitKey(hit: SearchHit): string {
  return `${hit.match}:${hit.message_id ?? hit.conversation_id}`;
}

/** One page from the hub; rejects with the hub's reason (400 says what to change). */
export async function fetchPage(query: string, cursor: string | null): Promise<SearchPage> {
  const params = new URLSearchParams({ q: query });
  if (cursor) params.set("cursor", cursor);
  const response = await fetch(`/api/search?${params}`, { credentials: "same-origin" });
  const body = (await response.json().catch(() => ({}))) as Partial<SearchPage> & {
    message?: string;
  };
  if (!response.ok) throw new Error(body.message ?? `HTTP ${response.status}`);
  return { query: body.query ?? query, terms: body.terms ?? [], hits: body.hits ?? [], next_cursor: body.next_cursor ?? null };
}
