import { useEffect, useRef } from "preact/hooks";

import { useT } from "../context";
import type { Translator } from "../i18n";
import { dispositionLabel } from "../labels";
import type { AttachmentInfo, Message } from "../protocol.gen";
import type { Entry, State } from "../state";
import { store } from "../store";
import { auditLine, merged } from "../timeline";

function author(message: Message, t: Translator, state: State): string {
  if (message.direction === "inbound") return t.t("timeline.customer");
  if (message.automatic) return t.t("timeline.automatic");
  if (message.author === state.hello?.agent.id) return t.t("timeline.you");
  const colleague = state.hello?.agents.find((a) => a.id === message.author);
  return colleague?.name ?? message.author ?? "";
}

export function Timeline(props: { entry: Entry }) {
  const t = useT();
  const state = store.get();
  const list = useRef<HTMLOListElement>(null);
  const { conversation, events } = props.entry;
  useEffect(() => {
    const node = list.current;
    if (node) node.scrollTop = node.scrollHeight;
  }, [conversation.id, conversation.messages.length, events.length, conversation.events?.length]);
  const name = (id: string | null) => {
    if (id === null) return "";
    if (id === state.hello?.agent.id) return t.t("timeline.you");
    return state.hello?.agents.find((a) => a.id === id)?.name ?? id;
  };
  return (
    <section class="timeline" aria-label={t.t("timeline.heading")}>
      <p class="event">
        {`${t.dateTime(conversation.created_at)} · ${t.t("event.created", {
          channel: conversation.channel,
          inbox: conversation.inbox,
        })}`}
      </p>
      <ol id="messages" ref={list} tabIndex={0} aria-label={t.t("timeline.heading")}>
        {merged(conversation.messages, conversation.events).map((item, index) =>
          item.kind === "message" ? (
            <MessageItem message={item.message} key={item.message.id} who={author(item.message, t, state)} />
          ) : (
            <li class="event audit" key={`audit-${index}`} data-kind={item.event.kind}>
              {`${t.time(item.at)} · ${auditLine(item.event, t, name)}`}
            </li>
          ),
        )}
        {events.map((event, index) => (
          <li class="event" key={`event-${index}`}>
            {`${t.time(event.at)} · ${
              event.kind === "closed"
                ? t.t("event.closed", { disposition: dispositionLabel(t, event.detail) })
                : t.t("event.removed", { reason: t.t(`removed.${event.detail}` as "removed.transferred") })
            }`}
          </li>
        ))}
      </ol>
    </section>
  );
}

function MessageItem(props: { message: Message; who: string }) {
  const t = useT();
  const { message } = props;
  const kind =
    message.kind === "note" ? "note" : message.automatic ? "outbound automatic" : message.direction;
  const meta = [props.who, t.time(message.created_at)];
  if (message.kind === "note") meta.push(t.t("timeline.note"));
  if (message.delivery_status) {
    const key = `delivery.${message.delivery_status}`;
    const known = t.t(key as "delivery.sent");
    meta.push(known === key ? message.delivery_status : known);
  }
  if (message.delivery_error) meta.push(message.delivery_error);
  const failed = message.delivery_status === "failed" || message.delivery_status === "undelivered";
  return (
    <li class={kind} data-id={message.id}>
      {message.subject && <strong class="subject">{message.subject}</strong>}
      <span class="text">{message.text}</span>
      {(message.notes ?? []).map((note, index) => (
        <span class="note-flag" key={index}>
          {note}
        </span>
      ))}
      <Files files={message.attachments ?? []} />
      <span class={failed ? "meta failed" : "meta"}>{meta.join(" · ")}</span>
    </li>
  );
}

// page previews (faxes) and pictures inline, every other file as a download link
function Files(props: { files: AttachmentInfo[] }) {
  if (!props.files.length) return null;
  return (
    <div class="files">
      {props.files.map((file) => {
        const url = `/api/attachments/${encodeURIComponent(file.id)}`;
        const picture = /^image\/(png|jpeg|gif)$/.test(file.content_type);
        return (
          <a href={url} target="_blank" rel="noopener" class={picture ? "preview" : "download"} key={file.id}>
            {picture ? (
              <img src={url} alt={file.name} loading="lazy" />
            ) : (
              `${file.name} (${Math.ceil(file.size / 1024)} KB)`
            )}
          </a>
        );
      })}
    </div>
  );
}
