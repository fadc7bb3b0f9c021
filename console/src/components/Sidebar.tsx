import { send } from "../connection";
import { useT } from "../context";
import type { Translator } from "../i18n";
import type { OfferView } from "../protocol.gen";
import {
  channelsIn,
  customerLabel,
  listed,
  remaining,
  select,
  type Entry,
  type State,
  type View,
} from "../state";
import { store, useNow } from "../store";
import { InboxView } from "./InboxView";
import { SearchView } from "./SearchView";

/** A deadline counting down; only this small node re-renders every second. */
export function Countdown(props: { at: number | null; kind: "offer" | "sla" }) {
  const t = useT();
  const now = useNow();
  const left = remaining(props.at, now);
  if (left === null) return <span class="sla none">{t.t("sla.none")}</span>;
  const late = left <= 0;
  const text =
    props.kind === "offer"
      ? late
        ? t.t("offer.expired")
        : t.t("offer.expires", { time: t.duration(left) })
      : late
        ? t.t("sla.overdue", { time: t.duration(-left) })
        : t.t("sla.due", { time: t.duration(left) });
  const urgent = late || left < (props.kind === "offer" ? 10 : 600);
  return <span class={`${props.kind === "offer" ? "expiry" : "sla"}${urgent ? " urgent" : ""}`}>{text}</span>;
}

export function TierBadge(props: { tier: string | null }) {
  const t = useT();
  return (
    <span class={`tier tier-${(props.tier ?? "none").toLowerCase()}`} title={t.t("label.tier")}>
      {props.tier ? `${t.t("label.tier")} ${props.tier}` : t.t("tier.none")}
    </span>
  );
}

export function PriorityBadge(props: { priority: string }) {
  const t = useT();
  return (
    <span class={`priority priority-${props.priority}`}>
      {t.t(`priority.${props.priority}` as "priority.normal")}
    </span>
  );
}

function OfferCard(props: { offer: OfferView }) {
  const t = useT();
  const { offer } = props;
  const who = customerLabel(offer.customer, t.t("customer.unknown"));
  const headingId = `offer-${offer.conversation_id}`;
  return (
    <li class={`offer priority-${offer.priority}`} data-conversation={offer.conversation_id} aria-labelledby={headingId}>
      <div class="offer-head">
        <strong id={headingId}>{who}</strong>
        <TierBadge tier={offer.customer.tier} />
      </div>
      <div class="offer-facts">
        <span class="channel">{offer.channel}</span>
        <span class="queue">{`${t.t("label.queue")}: ${offer.queue}`}</span>
        <PriorityBadge priority={offer.priority} />
      </div>
      {offer.instructions.length > 0 && <p class="instruction">{offer.instructions[0]}</p>}
      <p class="preview">{offer.preview}</p>
      <div class="offer-times">
        <Countdown at={offer.sla_due_at} kind="sla" />
        <Countdown at={offer.expires_at} kind="offer" />
      </div>
      <div class="offer-actions">
        <button
          type="button"
          class="accept primary"
          onClick={() => send({ type: "accept", conversation_id: offer.conversation_id })}
        >
          {t.t("offer.accept")}
        </button>
        <button
          type="button"
          class="decline"
          onClick={() => {
            send({ type: "decline", conversation_id: offer.conversation_id, reason: "" });
            store.update((s) => ({
              ...s,
              offers: s.offers.filter((o) => o.conversation_id !== offer.conversation_id),
            }));
          }}
        >
          {t.t("offer.decline")}
        </button>
      </div>
    </li>
  );
}

function ConversationItem(props: { entry: Entry; active: boolean; t: Translator }) {
  const { entry, t } = props;
  const conversation = entry.conversation;
  const who = customerLabel(conversation.customer, t.t("customer.unknown"));
  const last = conversation.messages[conversation.messages.length - 1];
  return (
    <li class={props.active ? "active" : ""} data-conversation={conversation.id}>
      <button
        type="button"
        aria-current={props.active ? "true" : "false"}
        onClick={() => store.set(select(store.get(), conversation.id))}
      >
        <span class="item-head">
          <strong>{who}</strong>
          {entry.unread > 0 && (
            <span class="unread" aria-label={t.t("list.unread", { count: entry.unread })}>
              {entry.unread}
            </span>
          )}
        </span>
        <span class="item-facts">
          {`${conversation.channel} · ${conversation.queue} · `}
          <PriorityBadge priority={conversation.priority} />
          {conversation.customer.tier ? ` · ${conversation.customer.tier}` : ""}
        </span>
        {last && <span class="item-last">{last.text.slice(0, 90)}</span>}
      </button>
    </li>
  );
}

export function Sidebar(props: { state: State }) {
  const t = useT();
  const { state } = props;
  const views: [View, number | null][] = [
    ["mine", Object.keys(state.open).length],
    ["offers", state.offers.length],
    ["closed", state.closed.length],
  ];
  if (state.hello?.agent.supervisor) views.push(["board", null]);
  views.push(["inbox", null], ["search", null]);
  const entries = listed(state);
  const setFilter = (change: Partial<State["filter"]>) =>
    store.update((s) => ({ ...s, filter: { ...s.filter, ...change } }));
  const showList = state.view === "mine" || state.view === "closed";
  return (
    <nav class="sidebar" aria-label={t.t("views.label")}>
      <section class="offers" aria-labelledby="offers-heading" hidden={!state.offers.length && state.view !== "offers"}>
        <h2 id="offers-heading">{t.t("offers.heading")}</h2>
        <ul id="offers">
          {state.offers.map((offer) => (
            <OfferCard offer={offer} key={offer.conversation_id} />
          ))}
        </ul>
        {!state.offers.length && <p class="empty">{t.t("list.empty.offers")}</p>}
      </section>
      <div class="views" role="group" aria-label={t.t("views.label")}>
        {views.map(([view, count]) => (
          <button
            type="button"
            key={view}
            id={`view-${view}`}
            aria-pressed={state.view === view}
            onClick={() => store.set({ ...store.get(), view })}
          >
            {t.t(`view.${view}`)}
            {count !== null && <span class="count">{count}</span>}
          </button>
        ))}
      </div>
      {state.view === "search" && <SearchView state={state} />}
      {state.view === "inbox" && <InboxView state={state} />}
      {showList && (
        <>
          <div class="filters">
            <input
              id="filter"
              type="search"
              aria-label={t.t("filter.label")}
              placeholder={t.t("filter.placeholder")}
              value={state.filter.text}
              onInput={(event) => setFilter({ text: (event.currentTarget as HTMLInputElement).value })}
            />
            <select
              aria-label={t.t("filter.channel")}
              value={state.filter.channel}
              onChange={(event) =>
                setFilter({ channel: (event.currentTarget as HTMLSelectElement).value })
              }
            >
              <option value="">{`${t.t("filter.channel")}: ${t.t("filter.any")}`}</option>
              {channelsIn(state).map((channel) => (
                <option value={channel} key={channel}>
                  {channel}
                </option>
              ))}
            </select>
            <select
              aria-label={t.t("filter.queue")}
              value={state.filter.queue}
              onChange={(event) =>
                setFilter({ queue: (event.currentTarget as HTMLSelectElement).value })
              }
            >
              <option value="">{`${t.t("filter.queue")}: ${t.t("filter.any")}`}</option>
              {(state.hello?.queues ?? []).map((queue) => (
                <option value={queue} key={queue}>
                  {queue}
                </option>
              ))}
            </select>
          </div>
          <ul id={state.view === "closed" ? "closed-list" : "conversations"} class="conversation-list">
            {entries.map((entry) => (
              <ConversationItem
                entry={entry}
                active={entry.conversation.id === state.active}
                t={t}
                key={entry.conversation.id}
              />
            ))}
          </ul>
          {!entries.length && (
            <p class="empty">{t.t(state.view === "closed" ? "list.empty.closed" : "list.empty.mine")}</p>
          )}
        </>
      )}
    </nav>
  );
}
