// What an agent records on the customer: the verdict on a claimed address, and notes kept
// on the customer (protocol frames ``claim`` and ``customer_note``; both answered with the
// conversation as ``open`` shows it).
import { useState } from "preact/hooks";

import { send } from "../connection";
import { useT } from "../context";
import type { Conversation } from "../protocol.gen";

interface ClaimInfo {
  kind: string;
  address: string;
  customer_number?: string | null;
  verified?: boolean;
  rejected?: boolean;
  checked_by?: string;
}

export function claimsOf(conversation: Conversation): ClaimInfo[] {
  const claims = conversation.customer.attributes.claims;
  return Array.isArray(claims) ? (claims as ClaimInfo[]) : [];
}

export function Claims(props: { conversation: Conversation; held: boolean }) {
  const t = useT();
  const claims = claimsOf(props.conversation);
  if (!claims.length) return null;
  const judge = (claim: ClaimInfo, verdict: "confirmed" | "rejected") =>
    send({
      type: "claim",
      conversation_id: props.conversation.id,
      kind: claim.kind,
      address: claim.address,
      verdict,
    });
  return (
    <ul id="claims" aria-label={t.t("customer.claim")}>
      {claims.map((claim) => {
        const address = claim.customer_number ? `${claim.address} (${claim.customer_number})` : claim.address;
        const status = claim.verified
          ? t.t("claim.confirmed", { agent: claim.checked_by ?? "" })
          : claim.rejected
            ? t.t("claim.rejected", { agent: claim.checked_by ?? "" })
            : t.t("claim.unverified");
        const open = !claim.verified && !claim.rejected;
        return (
          <li key={`${claim.kind}:${claim.address}`} class={open ? "claim open" : "claim"}>
            <span>{`${t.t("customer.claim")} ${claim.kind} ${address} — ${status}`}</span>
            {open && props.held && (
              <span class="claim-actions">
                <button type="button" onClick={() => judge(claim, "confirmed")}>
                  {t.t("claim.confirm")}
                </button>
                <button type="button" onClick={() => judge(claim, "rejected")}>
                  {t.t("claim.reject")}
                </button>
              </span>
            )}
          </li>
        );
      })}
    </ul>
  );
}

export function CustomerNotes(props: { conversation: Conversation; held: boolean }) {
  const t = useT();
  const [draft, setDraft] = useState("");
  const notes = props.conversation.customer_notes ?? [];
  const save = (event: Event) => {
    event.preventDefault();
    if (!draft.trim()) return;
    send({ type: "customer_note", conversation_id: props.conversation.id, text: draft });
    setDraft("");
  };
  return (
    <section class="customer-notes" aria-labelledby="customer-notes-heading">
      <h4 id="customer-notes-heading">{t.t("customerNotes.heading")}</h4>
      <ul id="customer-notes">
        {notes.map((note) => (
          <li key={note.id}>
            <span class="text">{note.text}</span>
            <span class="meta">{`${note.author} · ${t.dateTime(note.created_at)}`}</span>
          </li>
        ))}
      </ul>
      {!notes.length && <p class="empty">{t.t("customerNotes.empty")}</p>}
      {props.held && (
        <form onSubmit={save}>
          <textarea
            id="customer-note-text"
            rows={2}
            maxLength={5000}
            aria-label={t.t("customerNotes.add")}
            value={draft}
            onInput={(event) => setDraft((event.currentTarget as HTMLTextAreaElement).value)}
          />
          <button type="submit">{t.t("customerNotes.save")}</button>
        </form>
      )}
    </section>
  );
}
