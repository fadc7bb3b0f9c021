// The search view: a box searching the hub (messages, subjects, customers), results newest
// first with "more", a result opening its conversation (read-only unless it is ours).
import { useRef } from "preact/hooks";

import { send } from "../connection";
import { useT } from "../context";
import { failed, fetchPage, hitKey, received, searching, type SearchHit } from "../search";
import { select, type State } from "../state";
import { store } from "../store";

async function run(query: string, more: boolean): Promise<void> {
  const current = store.get().search;
  store.update((s) => ({ ...s, search: searching(s.search, query, more) }));
  try {
    const page = await fetchPage(query, more ? current.next : null);
    store.update((s) => ({ ...s, search: received(s.search, page, more) }));
  } catch (error) {
    store.update((s) => ({ ...s, search: failed(s.search, query, (error as Error).message) }));
  }
}

/** Ours: select it; anyone else's: ask the hub for it (it answers read-only, or refuses). */
export function openHit(id: string): void {
  const state = store.get();
  if (state.open[id] || state.closed.some((e) => e.conversation.id === id)) {
    store.set(select(state, id));
    return;
  }
  send({ type: "open", conversation_id: id });
}

export function SearchView(props: { state: State }) {
  const t = useT();
  const box = useRef<HTMLInputElement>(null);
  const { search } = props.state;
  const submit = (event: Event) => {
    event.preventDefault();
    const query = box.current?.value.trim() ?? "";
    if (query) void run(query, false);
  };
  return (
    <section class="search" aria-labelledby="search-heading">
      <h2 id="search-heading" class="visually-hidden">
        {t.t("search.heading")}
      </h2>
      <form role="search" onSubmit={submit} class="filters">
        <input
          id="search"
          ref={box}
          type="search"
          maxLength={200}
          aria-label={t.t("search.label")}
          placeholder={t.t("search.placeholder")}
          defaultValue={search.query}
        />
        <button type="submit">{t.t("search.submit")}</button>
      </form>
      <p class="search-status" role="status">
        {search.status === "loading"
          ? t.t("search.loading")
          : search.status === "error"
            ? search.error ?? ""
            : search.status === "done"
              ? t.t("search.count", { count: search.hits.length, more: search.next ? "+" : "" })
              : ""}
      </p>
      <ul id="search-results" class="conversation-list">
        {search.hits.map((hit) => (
          <HitItem hit={hit} active={hit.conversation_id === props.state.active} key={hitKey(hit)} />
        ))}
      </ul>
      {search.next && (
        <button type="button" class="more" onClick={() => void run(search.query, true)}>
          {t.t("search.more")}
        </button>
      )}
    </section>
  );
}

function HitItem(props: { hit: SearchHit; active: boolean }) {
  const t = useT();
  const { hit } = props;
  const who = hit.customer.name ?? hit.customer.customer_number ?? t.t("customer.unknown");
  const facts = [hit.channel, hit.queue, t.t(`search.status.${hit.status}` as "search.status.closed")];
  if (hit.assignee) facts.push(hit.assignee);
  return (
    <li class={props.active ? "active" : ""} data-conversation={hit.conversation_id}>
      <button type="button" aria-current={props.active ? "true" : "false"} onClick={() => openHit(hit.conversation_id)}>
        <span class="item-head">
          <strong>{who}</strong>
          <span class="when">{t.dateTime(hit.at)}</span>
        </span>
        <span class="item-facts">{facts.join(" · ")}</span>
        {hit.subject && <span class="item-subject">{hit.subject}</span>}
        <span class="item-last">
          {hit.match === "customer"
            ? t.t("search.customerMatch")
            : `${hit.message_kind === "note" ? `${t.t("timeline.note")}: ` : ""}${hit.snippet ?? ""}`}
        </span>
      </button>
    </li>
  );
}
