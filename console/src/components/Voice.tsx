// Phone calls: the screen pop that rings with a call offer (the caller's customer context,
// history and instructions before the agent picks up) and the call panel of a held call
// conversation (its timeline of call events, recordings to play, "call back").

import { useState } from "preact/hooks";

import { send } from "../connection";
import { useT } from "../context";
import type { Conversation, OfferView } from "../protocol.gen";
import { customerLabel, type State } from "../state";
import { canCallBack, connected, describe, onHold, recordings, ringing, voiceWord } from "../voice";

export function ScreenPop(props: { state: State }) {
  const t = useT();
  const offer: OfferView | null = ringing(props.state.offers);
  if (!offer) return null;
  const w = (key: Parameters<typeof voiceWord>[1]) => voiceWord(t.lang, key);
  const customer = offer.customer;
  const caller = customer.identities.find((i) => i.kind === "phone")?.address ?? "";
  return (
    <aside id="screen-pop" class="screen-pop" role="alertdialog" aria-labelledby="screen-pop-heading">
      <h2 id="screen-pop-heading">{`☎ ${w("pop.heading")}`}</h2>
      <p class="caller">
        <strong>{customerLabel(customer, t.t("customer.unknown"))}</strong>
        {caller && ` · ${caller}`}
        {customer.tier && ` · ${customer.tier}`}
        {customer.known && ` · ${t.t("customer.value")}: ${t.money(customer.lifetime_value)}`}
        {` · ${offer.queue} · ${offer.priority}`}
      </p>
      {offer.instructions.length > 0 && (
        <section>
          <h3>{w("pop.instructions")}</h3>
          <ul class="pop-instructions">
            {offer.instructions.map((line, index) => (
              <li key={index}>{line}</li>
            ))}
          </ul>
        </section>
      )}
      <section>
        <h3>{w("pop.history")}</h3>
        {customer.history.length ? (
          <ul class="pop-history">
            {customer.history.slice(0, 5).map((old) => (
              <li key={old.id}>{`${t.date(old.created_at)} · ${old.channel} · ${old.subject ?? old.status}`}</li>
            ))}
          </ul>
        ) : (
          <p>{w("pop.none")}</p>
        )}
      </section>
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
          onClick={() => send({ type: "decline", conversation_id: offer.conversation_id, reason: "" })}
        >
          {t.t("offer.decline")}
        </button>
      </div>
    </aside>
  );
}

export function CallPanel(props: { conversation: Conversation; state: State; readOnly: boolean }) {
  const t = useT();
  const [calling, setCalling] = useState(false);
  const { conversation, state } = props;
  if (conversation.channel !== "voice") return null;
  const agentName = (id: string) => state.hello?.agents.find((a) => a.id === id)?.name ?? id;
  const played = recordings(conversation);
  const calls = conversation.calls ?? [];
  return (
    <section id="call-panel" class="call-panel" aria-label={voiceWord(t.lang, "call.heading")}>
      <ol class="call-events">
        {calls.map((call, index) => (
          <li key={`${call.call_sid}-${call.state}-${index}`} data-state={call.state}>
            {`${t.time(call.at)} · ${describe(t.lang, call, agentName)}`}
          </li>
        ))}
      </ol>
      {played.length > 0 && (
        <div class="recordings">
          {played.flatMap((message) =>
            (message.attachments ?? [])
              .filter((file) => file.content_type.startsWith("audio/"))
              .map((file) => (
                <audio
                  key={file.id}
                  controls
                  preload="none"
                  src={`/api/attachments/${encodeURIComponent(file.id)}`}
                  aria-label={`${voiceWord(t.lang, "call.recordings")}: ${message.text}`}
                />
              )),
          )}
        </div>
      )}
      {!props.readOnly && connected(conversation) && (
        <button
          type="button"
          id="call-hold"
          onClick={() =>
            send({ type: "call_hold", conversation_id: conversation.id, hold: !onHold(conversation) })
          }
        >
          {voiceWord(t.lang, onHold(conversation) ? "call.resume" : "call.hold")}
        </button>
      )}
      {!props.readOnly && canCallBack(conversation) && (
        <button
          type="button"
          id="call-back"
          disabled={calling}
          onClick={() => {
            setCalling(true);
            send({ type: "call_back", conversation_id: conversation.id });
            setTimeout(() => setCalling(false), 5000);
          }}
        >
          {`☎ ${voiceWord(t.lang, calling ? "call.calling" : "call.back")}`}
        </button>
      )}
    </section>
  );
}
