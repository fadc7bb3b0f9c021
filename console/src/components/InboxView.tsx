// The Inbox view: the hub's lists (queues I serve, unassigned, closed, all I may see) with
// filters; a row opens its conversation (read-only unless it is ours).
import { useEffect } from "preact/hooks";

import { useT } from "../context";
import {
  INBOX_VIEWS,
  fetchInbox,
  loaded,
  loading,
  refused,
  requestOf,
  type InboxFilter,
  type InboxRow,
  type InboxView as Which,
} from "../inbox";
import type { State } from "../state";
import { store } from "../store";
import { PriorityBadge } from "./Sidebar";
import { openHit } from "./SearchView";

const CHANNELS = ["email", "sms", "whatsapp", "webchat", "fax", "voice"];

async function load(view: Which, filter: InboxFilter, more: boolean): Promise<void> {
  const cursor = more ? store.get().inbox.next : null;
  const asked = requestOf(view, filter);
  store.update((s) => ({ ...s, inbox: loading(s.inbox, view, filter, more) }));
  try {
    const page = await fetchInbox(view, filter, cursor);
    store.update((s) => ({ ...s, inbox: loaded(s.inbox, asked, page.rows, page.next, more) }));
  } catch (error) {
    store.update((s) => ({ ...s, inbox: refused(s.inbox, asked, (error as Error).message) }));
  }
}

export function InboxView(props: { state: State }) {
  const t = useT();
  const { inbox, hello } = props.state;
  useEffect(() => {
    void load(inbox.view, inbox.filter, false);
  }, []);
  const change = (view: Which, filter: Partial<InboxFilter>) =>
    void load(view, { ...inbox.filter, ...filter }, false);
  const select = (label: string, value: string, options: string[], onChange: (v: string) => void) => (
    <select aria-label={label} value={value} onChange={(e) => onChange((e.currentTarget as HTMLSelectElement).value)}>
      <option value="">{`${label}: ${t.t("filter.any")}`}</option>
      {options.map((option) => (
        <option value={option} key={option}>
          {option}
        </option>
      ))}
    </select>
  );
  return (
    <section class="inbox" aria-labelledby="inbox-heading">
      <h2 id="inbox-heading" class="visually-hidden">
        {t.t("view.inbox")}
      </h2>
      <div class="views" role="group" aria-label={t.t("inbox.views")}>
        {INBOX_VIEWS.map((view) => (
          <button
            type="button"
            key={view}
            id={`inbox-${view}`}
            aria-pressed={inbox.view === view}
            onClick={() => change(view, {})}
          >
            {t.t(`inbox.${view}` as "inbox.all")}
          </button>
        ))}
      </div>
      <div class="filters">
        {select(t.t("filter.channel"), inbox.filter.channel, CHANNELS, (channel) => change(inbox.view, { channel }))}
        {select(t.t("filter.queue"), inbox.filter.queue, hello?.queues ?? [], (queue) => change(inbox.view, { queue }))}
        {select(t.t("label.tier"), inbox.filter.tier, ["A", "B", "C"], (tier) => change(inbox.view, { tier }))}
        <input
          id="inbox-tag"
          type="search"
          maxLength={64}
          aria-label={t.t("inbox.tag")}
          placeholder={t.t("inbox.tag")}
          value={inbox.filter.tag}
          onChange={(e) => change(inbox.view, { tag: (e.currentTarget as HTMLInputElement).value.trim() })}
        />
      </div>
      <p class="search-status" role="status">
        {inbox.status === "loading" ? t.t("search.loading") : inbox.status === "error" ? inbox.error ?? "" : ""}
      </p>
      <ul id="inbox-list" class="conversation-list">
        {inbox.rows.map((row) => (
          <Row row={row} active={row.id === props.state.active} key={row.id} />
        ))}
      </ul>
      {inbox.status === "done" && !inbox.rows.length && <p class="empty">{t.t("inbox.empty")}</p>}
      {inbox.next && (
        <button type="button" class="more" onClick={() => void load(inbox.view, inbox.filter, true)}>
          {t.t("search.more")}
        </button>
      )}
    </section>
  );
}

function Row(props: { row: InboxRow; active: boolean }) {
  const t = useT();
  const { row } = props;
  const who = row.customer.name ?? row.customer.customer_number ?? t.t("customer.unknown");
  const facts = [row.channel, row.queue, t.t(`search.status.${row.status}` as "search.status.closed")];
  if (row.assignee) facts.push(row.assignee);
  if (row.customer.tier) facts.push(`${t.t("label.tier")} ${row.customer.tier}`);
  return (
    <li class={props.active ? "active" : ""} data-conversation={row.id}>
      <button type="button" aria-current={props.active ? "true" : "false"} onClick={() => openHit(row.id)}>
        <span class="item-head">
          <strong>{who}</strong>
          <span class="when">{t.dateTime(row.updated_at)}</span>
        </span>
        <span class="item-facts">
          {`${facts.join(" · ")} · `}
          <PriorityBadge priority={row.priority} />
        </span>
        {row.subject && <span class="item-subject">{row.subject}</span>}
        {row.tags.length > 0 && <span class="item-last">{row.tags.join(", ")}</span>}
      </button>
    </li>
  );
}
