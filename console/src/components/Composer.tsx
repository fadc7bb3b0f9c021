import { useEffect, useRef, useState } from "preact/hooks";

import { expand, insert, matching, slashToken, variablesFor } from "../canned";
import { send } from "../connection";
import { useT } from "../context";
import { dispositionLabel } from "../labels";
import type { CannedText, Compose, Conversation } from "../protocol.gen";
import { remember, type State } from "../state";
import { store } from "../store";

function newId(): string {
  return crypto.randomUUID?.() ?? Date.now().toString(36) + Math.random().toString(36).slice(2);
}

export function Composer(props: { conversation: Conversation; state: State }) {
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

export function Actions(props: { conversation: Conversation; state: State; onTransfer: () => void }) {
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
