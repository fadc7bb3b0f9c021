import { useT } from "../context";
import type { Conversation } from "../protocol.gen";
import { customerLabel, select, type Entry, type State } from "../state";
import { store } from "../store";
import { Actions, Composer } from "./Composer";
import { CustomerPanel } from "./CustomerPanel";
import { TransferDialog } from "./Dialogs";
import { Countdown, PriorityBadge, TierBadge } from "./Sidebar";
import { Timeline } from "./Timeline";
import { CallPanel } from "./Voice";

export function ConversationPane(props: {
  state: State;
  entry: Entry | null;
  transferOpen: boolean;
  onTransfer: (open: boolean) => void;
}) {
  const t = useT();
  const { entry, state } = props;
  if (!entry) {
    return (
      <main id="main" class="pane empty-pane">
        <p id="empty">{t.t("empty.pick")}</p>
      </main>
    );
  }
  const conversation = entry.conversation;
  const readOnly = entry.closedAt !== null;
  const who = customerLabel(conversation.customer, t.t("customer.unknown"));
  return (
    <main id="main" class="pane">
      <article id="conversation" aria-labelledby="customer">
        <header class="conversation-head">
          <button
            type="button"
            class="back"
            onClick={() => store.set(select(store.get(), null))}
            aria-label={t.t("actions.back")}
          >
            ←
          </button>
          <h2 id="customer">{who}</h2>
          <div class="facts">
            <TierBadge tier={conversation.customer.tier} />
            {conversation.customer.known && (
              <span class="value">{`${t.t("customer.value")}: ${t.money(conversation.customer.lifetime_value)}`}</span>
            )}
            <PriorityBadge priority={conversation.priority} />
            <span>{`${conversation.channel} (${conversation.inbox})`}</span>
            <span>{`${t.t("label.queue")}: ${conversation.queue}`}</span>
            {!readOnly && <Countdown at={conversation.sla_due_at} kind="sla" />}
          </div>
        </header>
        {conversation.instructions.length > 0 && (
          <section class="instructions" aria-labelledby="instructions-heading">
            <h3 id="instructions-heading">{t.t("instructions.heading")}</h3>
            <ul id="instructions">
              {conversation.instructions.map((line, index) => (
                <li key={index}>{line}</li>
              ))}
            </ul>
          </section>
        )}
        <Routing conversation={conversation} />
        <CallPanel conversation={conversation} state={state} readOnly={readOnly} />
        <Timeline entry={entry} />
        {readOnly ? (
          <p class="read-only">{t.t("compose.readOnly")}</p>
        ) : (
          <>
            {/* keyed: another conversation gets a fresh draft, note box and file choice */}
            <Composer key={conversation.id} conversation={conversation} state={state} />
            <Actions conversation={conversation} state={state} onTransfer={() => props.onTransfer(true)} />
          </>
        )}
      </article>
      <CustomerPanel conversation={conversation} state={state} />
      {props.transferOpen && !readOnly && (
        <TransferDialog
          conversation={conversation}
          state={state}
          onClose={() => props.onTransfer(false)}
        />
      )}
    </main>
  );
}

function Routing(props: { conversation: Conversation }) {
  const t = useT();
  const { rules, tags } = props.conversation;
  if (!rules.length && !tags.length) return null;
  return (
    <p id="routing">
      {rules.length > 0 && `${t.t("routing.rules")}: ${rules.join(", ")}`}
      {rules.length > 0 && tags.length > 0 && " · "}
      {tags.length > 0 && `${t.t("routing.tags")}: ${tags.join(", ")}`}
    </p>
  );
}
