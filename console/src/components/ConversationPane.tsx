import { useEffect, useRef, useState } from "preact/hooks";

import { send } from "../connection";
import { useT } from "../context";
import type { Translator } from "../i18n";
import type { AttachmentInfo, CannedText, Compose, Conversation, Message } from "../protocol.gen";
import { expand, insert, matching, slashToken, variablesFor } from "../canned";
import { dispositionLabel } from "../labels";
import { customerLabel, remember, select, type Entry, type State } from "../state";
import { store } from "../store";
import { CustomerPanel } from "./CustomerPanel";
import { TransferDialog } from "./Dialogs";
import { Countdown, PriorityBadge, TierBadge } from "./Sidebar";

function newId(): string {
  return crypto.randomUUID?.() ?? Date.now().toString(36) + Math.random().toString(36).slice(2);
}

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
        <Timeline entry={entry} />
        {readOnly ? (
          <p class="read-only">{t.t("compose.readOnly")}</p>
        ) : (
          <>
            <Composer conversation={conversation} state={state} />
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

function author(message: Message, t: Translator, state: State): string {
  if (message.direction === "inbound") return t.t("timeline.customer");
  if (message.automatic) return t.t("timeline.automatic");
  if (message.author === state.hello?.agent.id) return t.t("timeline.you");
  const colleague = state.hello?.agents.find((a) => a.id === message.author);
  return colleague?.name ?? message.author ?? "";
}

function Timeline(props: { entry: Entry }) {
  const t = useT();
  const state = store.get();
  const list = useRef<HTMLOListElement>(null);
  const { conversation, events } = props.entry;
  useEffect(() => {
    const node = list.current;
    if (node) node.scrollTop = node.scrollHeight;
  }, [conversation.id, conversation.messages.length, events.length]);
  return (
    <section class="timeline" aria-label={t.t("timeline.heading")}>
      <p class="event">
        {`${t.dateTime(conversation.created_at)} · ${t.t("event.created", {
          channel: conversation.channel,
          inbox: conversation.inbox,
        })}`}
      </p>
      <ol id="messages" ref={list} tabIndex={0} aria-label={t.t("timeline.heading")}>
        {conversation.messages.map((message) => (
          <MessageItem message={message} key={message.id} who={author(message, t, state)} />
        ))}
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

function Composer(props: { conversation: Conversation; state: State }) {
  const t = useT();
  const { conversation, state } = props;
  const compose: Compose = conversation.compose ?? {
    mode: "text",
    window_closes_at: null,
    templates: [],
    reason: null,
    alternatives: [],
  };
  const [note, setNote] = useState(false);
  const [text, setText] = useState("");
  const [template, setTemplate] = useState(compose.templates[0]?.name ?? "");
  const [variables, setVariables] = useState<Record<string, string>>({});
  const [via, setVia] = useState("");
  const [status, setStatus] = useState("");
  const files = useRef<HTMLInputElement>(null);
  const box = useRef<HTMLTextAreaElement>(null);
  const timer = useRef<number | undefined>(undefined);
  const [suggest, setSuggest] = useState<{ items: CannedText[]; index: number; start: number } | null>(
    null,
  );

  useEffect(() => {
    setText("");
    setNote(false);
    setVia("");
    setStatus("");
    setTemplate(compose.templates[0]?.name ?? "");
  }, [conversation.id]);

  const templating = compose.mode === "template" && !note;
  let info = compose.reason ?? "";
  if (!info && compose.window_closes_at) {
    info = t.t("compose.windowUntil", { time: t.dateTime(compose.window_closes_at) });
  }
  const cost = state.draftCost;
  let costText = status;
  if (!costText && cost && cost.encoding && text) {
    const chars = cost.unicode_characters ?? [];
    costText = chars.length
      ? t.t("compose.segmentsBecause", { segments: cost.segments ?? 0, encoding: cost.encoding, chars: chars.join(" ") })
      : t.t("compose.segments", { segments: cost.segments ?? 0, encoding: cost.encoding });
  }

  const lookUp = (value: string, caret: number) => {
    const token = slashToken(value, caret);
    const items = token ? matching(state.hello?.canned ?? [], conversation.queue, token.query) : [];
    setSuggest(token && items.length ? { items, index: 0, start: token.start } : null);
  };

  const pick = (chosen: CannedText) => {
    const node = box.current;
    if (!node || !suggest) return;
    const filled = expand(
      chosen.text,
      variablesFor(conversation, state.hello?.agent.name ?? "", (at) => t.date(at)),
    );
    const next = insert(text, suggest.start, node.selectionStart ?? text.length, filled);
    setText(next.text);
    setSuggest(null);
    requestAnimationFrame(() => {
      node.focus();
      node.setSelectionRange(next.caret, next.caret);
    });
  };

  const typed = (value: string, caret: number) => {
    lookUp(value, caret);
    setText(value);
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => {
      if (value && !note) send({ type: "preview", conversation_id: conversation.id, text: value });
    }, 250);
  };

  const deliver = (frame: Parameters<typeof remember>[1]) => {
    store.set(remember(store.get(), frame));
    send(frame);
    setText("");
    setStatus("");
    setSuggest(null);
    // a note is the exception: the next thing typed is a reply again
    setNote(false);
    store.update((s) => ({ ...s, draftCost: null }));
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    if (note) {
      if (!text.trim()) return;
      deliver({ type: "note", conversation_id: conversation.id, client_id: newId(), text: text.trim() });
      return;
    }
    const frame: Parameters<typeof remember>[1] & { type: "reply" } = templating
      ? { type: "reply", conversation_id: conversation.id, client_id: newId(), template, variables }
      : { type: "reply", conversation_id: conversation.id, client_id: newId(), text: text.trim() };
    if (!templating && !text.trim()) return;
    const alternative = compose.alternatives[Number(via) - 1];
    if (!templating && alternative) {
      frame.via = alternative.inbox;
      frame.to = alternative.address;
    }
    const chosen = Array.from(files.current?.files ?? []);
    if (chosen.length) {
      setStatus(t.t("compose.uploading", { count: chosen.length }));
      try {
        frame.attachments = await upload(chosen);
      } catch (error) {
        setStatus("");
        store.update((s) => ({ ...s, error: (error as Error).message }));
        return;
      }
      if (files.current) files.current.value = "";
    }
    deliver(frame);
  };

  const chosenTemplate = compose.templates.find((x) => x.name === template);
  return (
    <form id="reply-form" class={note ? "composer noting" : "composer"} onSubmit={submit}>
      {info && (
        <p id="compose-info" class={compose.mode === "text" ? "" : "warning"}>
          {info}
        </p>
      )}
      {templating && (
        <div id="template-picker">
          <select
            id="template-name"
            aria-label={t.t("compose.template")}
            value={template}
            onChange={(event) => setTemplate((event.currentTarget as HTMLSelectElement).value)}
          >
            {compose.templates.map((x) => (
              <option value={x.name} key={x.name}>{`${x.name}: ${x.body}`}</option>
            ))}
          </select>
          <div id="template-variables">
            {(chosenTemplate?.variables ?? []).map((name) => (
              <input
                key={name}
                name={name}
                placeholder={name}
                aria-label={name}
                value={variables[name] ?? ""}
                onInput={(event) =>
                  setVariables({ ...variables, [name]: (event.currentTarget as HTMLInputElement).value })
                }
              />
            ))}
          </div>
        </div>
      )}
      <label class="visually-hidden" for="reply-text">
        {note ? t.t("compose.noteLabel") : t.t("compose.label")}
      </label>
      <textarea
        id="reply-text"
        ref={box}
        rows={3}
        hidden={templating}
        value={text}
        aria-controls={suggest ? "canned-suggestions" : undefined}
        aria-activedescendant={suggest ? `canned-${suggest.items[suggest.index].name}` : undefined}
        placeholder={note ? t.t("compose.notePlaceholder") : t.t("compose.placeholder")}
        onInput={(event) => {
          const node = event.currentTarget as HTMLTextAreaElement;
          typed(node.value, node.selectionStart ?? node.value.length);
        }}
        onKeyDown={(event) => {
          if (suggest) {
            const count = suggest.items.length;
            if (event.key === "ArrowDown" || event.key === "ArrowUp") {
              event.preventDefault();
              const step = event.key === "ArrowDown" ? 1 : count - 1;
              setSuggest({ ...suggest, index: (suggest.index + step) % count });
              return;
            }
            if (event.key === "Enter" || event.key === "Tab") {
              event.preventDefault();
              pick(suggest.items[suggest.index]);
              return;
            }
            if (event.key === "Escape") {
              event.stopPropagation();
              setSuggest(null);
              return;
            }
          }
          if (event.key === "Enter" && !event.shiftKey) {
            event.preventDefault();
            (event.currentTarget.form as HTMLFormElement).requestSubmit();
          }
        }}
        onBlur={() => setSuggest(null)}
      />
      {suggest && (
        <ul id="canned-suggestions" role="listbox" aria-label={t.t("canned.label")}>
          {suggest.items.map((item, index) => (
            <li
              id={`canned-${item.name}`}
              key={item.name}
              role="option"
              aria-selected={index === suggest.index}
              onMouseDown={(event) => {
                event.preventDefault(); // keep the focus in the text box
                pick(item);
              }}
            >
              <strong>{`/${item.name}`}</strong>
              <span>{item.text.slice(0, 120)}</span>
            </li>
          ))}
        </ul>
      )}
      <p id="draft-info" aria-live="polite">
        {costText}
      </p>
      <div class="compose-actions">
        <label class="note-toggle">
          <input
            type="checkbox"
            id="reply-note"
            checked={note}
            onChange={(event) => setNote((event.currentTarget as HTMLInputElement).checked)}
          />
          {t.t("compose.note")}
        </label>
        {compose.alternatives.length > 0 && !templating && !note && (
          <select
            id="reply-via"
            aria-label={t.t("compose.via")}
            value={via}
            onChange={(event) => setVia((event.currentTarget as HTMLSelectElement).value)}
          >
            <option value="">{t.t("compose.viaHere")}</option>
            {compose.alternatives.map((option, index) => (
              <option value={String(index + 1)} key={index}>
                {t.t("compose.viaOption", { channel: option.channel, address: option.address, inbox: option.inbox })}
              </option>
            ))}
          </select>
        )}
        <input ref={files} type="file" id="reply-files" multiple aria-label={t.t("compose.files")} hidden={note} />
        <button type="submit" id="reply-send" class="primary" disabled={compose.mode === "blocked" && !note}>
          {note ? t.t("compose.addNote") : t.t("compose.send")}
        </button>
      </div>
    </form>
  );
}

function Actions(props: { conversation: Conversation; state: State; onTransfer: () => void }) {
  const t = useT();
  const dispositions = props.state.hello?.dispositions ?? ["resolved"];
  const [disposition, setDisposition] = useState(dispositions[0]);
  return (
    <div class="conversation-actions">
      <button type="button" id="transfer" aria-keyshortcuts="t" onClick={props.onTransfer}>
        {t.t("actions.transfer")}
      </button>
      <span class="close-group">
        <select
          id="disposition"
          aria-label={t.t("actions.disposition")}
          aria-keyshortcuts="c"
          value={disposition}
          onChange={(event) => setDisposition((event.currentTarget as HTMLSelectElement).value)}
        >
          {dispositions.map((d) => (
            <option value={d} key={d}>
              {dispositionLabel(t, d)}
            </option>
          ))}
        </select>
        <button
          type="button"
          id="close-conversation"
          onClick={() =>
            send({ type: "close", conversation_id: props.conversation.id, disposition })
          }
        >
          {t.t("actions.close")}
        </button>
      </span>
    </div>
  );
}

// files go to /api/uploads first; the reply carries the tokens it answers
async function upload(files: File[]): Promise<string[]> {
  const tokens: string[] = [];
  for (const file of files) {
    const response = await fetch("/api/uploads", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": file.type || "application/octet-stream",
        "X-Filename": encodeURIComponent(file.name),
      },
      body: file,
    });
    const body = (await response.json().catch(() => ({}))) as { token?: string; message?: string };
    if (!response.ok || !body.token) {
      throw new Error(`${file.name}: ${body.message ?? response.status}`);
    }
    tokens.push(body.token);
  }
  return tokens;
}
