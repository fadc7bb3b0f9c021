import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { send } from "../connection";
import { useT } from "../context";
import type { Conversation, PastConversation } from "../protocol.gen";
import { SHEET } from "../shortcuts";
import type { State } from "../state";
import { statusLabel } from "../labels";

/** A modal <dialog>: focus stays inside, Esc closes it, focus returns where it was. */
function Modal(props: { id: string; title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    const before = document.activeElement as HTMLElement | null;
    if (dialog && !dialog.open) dialog.showModal();
    return () => before?.focus?.();
  }, []);
  return (
    <dialog
      id={props.id}
      ref={ref}
      aria-labelledby={`${props.id}-title`}
      onClose={props.onClose}
      onCancel={props.onClose}
    >
      <h2 id={`${props.id}-title`}>{props.title}</h2>
      {props.children}
    </dialog>
  );
}

export function HelpDialog(props: { onClose: () => void }) {
  const t = useT();
  return (
    <Modal id="shortcuts" title={t.t("help.heading")} onClose={props.onClose}>
      <table class="shortcut-sheet">
        <tbody>
          {SHEET.map(([keys, key]) => (
            <tr key={keys}>
              <th scope="row">
                <kbd>{keys}</kbd>
              </th>
              <td>{t.t(key)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <button type="button" class="primary" onClick={props.onClose} autofocus>
        {t.t("help.close")}
      </button>
    </Modal>
  );
}

export function TransferDialog(props: {
  conversation: Conversation;
  state: State;
  onClose: () => void;
}) {
  const t = useT();
  const hello = props.state.hello;
  const me = hello?.agent.id;
  const queues = hello?.queues ?? [];
  const colleagues = (hello?.agents ?? []).filter((a) => a.id !== me);
  const [target, setTarget] = useState(`queue:${props.conversation.queue}`);
  const [note, setNote] = useState("");
  const submit = (event: Event) => {
    event.preventDefault();
    const [kind, name] = [target.slice(0, target.indexOf(":")), target.slice(target.indexOf(":") + 1)];
    send({
      type: "transfer",
      conversation_id: props.conversation.id,
      ...(kind === "queue" ? { queue: name } : { agent: name }),
      note: note.trim(),
    });
    props.onClose();
  };
  return (
    <Modal id="transfer-dialog" title={t.t("transfer.heading")} onClose={props.onClose}>
      <form onSubmit={submit}>
        <label for="transfer-target">{`${t.t("transfer.toQueue")} / ${t.t("transfer.toAgent")}`}</label>
        <select
          id="transfer-target"
          value={target}
          onChange={(event) => setTarget((event.currentTarget as HTMLSelectElement).value)}
        >
          <optgroup label={t.t("transfer.toQueue")}>
            {queues.map((queue) => (
              <option value={`queue:${queue}`} key={queue}>
                {queue}
              </option>
            ))}
          </optgroup>
          <optgroup label={t.t("transfer.toAgent")}>
            {colleagues.map((agent) => (
              <option value={`agent:${agent.id}`} key={agent.id}>
                {agent.name}
              </option>
            ))}
          </optgroup>
        </select>
        <label for="transfer-note">{t.t("transfer.note")}</label>
        <textarea
          id="transfer-note"
          rows={3}
          value={note}
          onInput={(event) => setNote((event.currentTarget as HTMLTextAreaElement).value)}
        />
        <div class="dialog-actions">
          <button type="submit" id="transfer-submit" class="primary">
            {t.t("transfer.submit")}
          </button>
          <button type="button" onClick={props.onClose}>
            {t.t("transfer.cancel")}
          </button>
        </div>
      </form>
    </Modal>
  );
}

export function PastDialog(props: { past: PastConversation; onClose: () => void }) {
  const t = useT();
  const { past } = props;
  const rows: [string, string | null][] = [
    [t.t("label.channel"), `${past.channel} (${past.inbox})`],
    [t.t("label.status"), statusLabel(t, past.status)],
    [t.t("actions.disposition"), past.disposition],
    ["", past.subject],
  ];
  return (
    <Modal id="past-conversation" title={t.dateTime(past.created_at)} onClose={props.onClose}>
      <dl>
        {rows
          .filter(([, value]) => value)
          .map(([label, value]) => [<dt key={`t${label}`}>{label || "—"}</dt>, <dd key={`d${label}`}>{value}</dd>])}
      </dl>
      <p>{t.t("history.notLoaded")}</p>
      <button type="button" class="primary" onClick={props.onClose} autofocus>
        {t.t("history.close")}
      </button>
    </Modal>
  );
}
