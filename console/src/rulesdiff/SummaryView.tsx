import type { ComponentChildren } from "preact";

import { type Counted, type Decision, type Example, type Summary, duration } from "./types";

function Section(props: { id: string; title: string; children: ComponentChildren }) {
  return (
    <section id={props.id} aria-labelledby={`${props.id}-heading`}>
      <h3 id={`${props.id}-heading`}>{props.title}</h3>
      {props.children}
    </section>
  );
}

function ExampleLinks(props: { ids: string[] }) {
  if (!props.ids.length) return null;
  return (
    <span class="examples">
      {props.ids.map((id) => (
        <a key={id} href={`#example-${id}`}>
          {id}
        </a>
      ))}
    </span>
  );
}

function CountedTable(props: { id: string; title: string; what: string; rows: Counted[] }) {
  if (!props.rows.length) return null;
  return (
    <Section id={props.id} title={props.title}>
      <table>
        <thead>
          <tr>
            <th scope="col">{props.what}</th>
            <th scope="col">messages</th>
            <th scope="col">examples</th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((row) => (
            <tr key={row.name}>
              <td>{row.name}</td>
              <td class="number">{row.messages}</td>
              <td>
                <ExampleLinks ids={row.examples} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Section>
  );
}

function decisionText(decision: Decision): string {
  const parts = [`queue ${decision.queue}`, `priority ${decision.priority}`];
  if (decision.sla_seconds !== null) parts.push(`SLA ${duration(decision.sla_seconds)}`);
  if (decision.auto_reply) parts.push("auto-reply");
  parts.push(`rules: ${decision.rules.join(", ") || "none"}`);
  return parts.join(" · ");
}

function ExampleView(props: { example: Example }) {
  const example = props.example;
  const when = new Date(example.received_at * 1000).toISOString().slice(0, 16).replace("T", " ");
  return (
    <article id={`example-${example.message_id}`} class="example">
      <h4>
        {example.message_id} · {example.channel}/{example.inbox} · {when} UTC
        {example.has_context ? "" : " · envelope only"}
      </h4>
      <p class="excerpt">
        {example.subject ? `${example.subject}: ` : ""}
        {example.excerpt}
      </p>
      <dl>
        <dt>now</dt>
        <dd>{decisionText(example.old)}</dd>
        <dt>proposed</dt>
        <dd>{decisionText(example.new)}</dd>
      </dl>
      <ul class="trace">
        {example.old_trace.map((entry, index) => (
          <li key={`o${index}`}>
            now: {entry.rule} {entry.result} {entry.error ?? JSON.stringify(entry.set ?? {})}
          </li>
        ))}
        {example.new_trace.map((entry, index) => (
          <li key={`n${index}`}>
            proposed: {entry.rule} {entry.result} {entry.error ?? JSON.stringify(entry.set ?? {})}
          </li>
        ))}
      </ul>
    </article>
  );
}

export function SummaryView(props: { summary: Summary }) {
  const s = props.summary;
  const replies = s.auto_replies;
  return (
    <section id="summary" aria-labelledby="summary-heading">
      <h2 id="summary-heading">
        {s.changed} of {s.messages} messages would be handled differently
      </h2>
      <p class="hint">
        Rules {s.against.slice(0, 12)} (now) compared with {s.proposed.slice(0, 12)} (proposed).
        {s.without_context
          ? ` ${s.without_context} messages were stored before the hub recorded what the rules saw: they were replayed with their envelope only (customer unknown).`
          : ""}
      </p>
      <Section id="queues" title="Queues">
        <table>
          <thead>
            <tr>
              <th scope="col">now</th>
              <th scope="col">proposed</th>
              <th scope="col">messages</th>
              <th scope="col">examples</th>
            </tr>
          </thead>
          <tbody>
            {s.queues.map((move) => (
              <tr
                key={`${move.old_queue}>${move.new_queue}`}
                class={move.old_queue === move.new_queue ? "" : "moved"}
              >
                <td>{move.old_queue}</td>
                <td>{move.new_queue}</td>
                <td class="number">{move.messages}</td>
                <td>
                  <ExampleLinks ids={move.examples} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
      <CountedTable
        id="priorities"
        title="Priority changes"
        what="now → proposed"
        rows={s.priorities.map((c) => ({ name: `${c.old} → ${c.new}`, ...c }))}
      />
      <CountedTable
        id="slas"
        title="SLA changes"
        what="now → proposed"
        rows={s.slas.map((c) => ({ name: `${duration(c.old)} → ${duration(c.new)}`, ...c }))}
      />
      <CountedTable id="newly" title="Rules newly firing" what="rule" rows={s.newly_firing} />
      <CountedTable id="stopped" title="Rules no longer firing" what="rule" rows={s.stopped_firing} />
      {s.never_firing.length ? (
        <Section id="never" title="Rules that fire on no message">
          <p>{s.never_firing.join(", ")}</p>
        </Section>
      ) : null}
      <CountedTable id="added" title="Instructions added" what="instruction" rows={s.instructions_added} />
      <CountedTable id="lost" title="Instructions lost" what="instruction" rows={s.instructions_lost} />
      <Section id="replies" title="Auto-replies that would be sent">
        <p>
          {replies.old} now, {replies.new} proposed
          {replies.changed ? `, ${replies.changed} with another text` : ""}
        </p>
      </Section>
      <CountedTable id="replies-gained" title="Auto-replies gained" what="text" rows={replies.gained} />
      <CountedTable id="replies-lost" title="Auto-replies lost" what="text" rows={replies.lost} />
      {s.errors.length ? (
        <Section id="rule-errors" title="Rules that failed">
          <ul>
            {s.errors.map((e) => (
              <li key={`${e.side}${e.rule}`} class="error">
                {e.rule} ({e.side === "old" ? "now" : "proposed"}) failed on {e.messages} messages:{" "}
                {e.error}
              </li>
            ))}
          </ul>
        </Section>
      ) : null}
      {Object.keys(s.examples).length ? (
        <Section id="examples" title="Examples">
          {Object.values(s.examples).map((example) => (
            <ExampleView key={example.message_id} example={example} />
          ))}
        </Section>
      ) : null}
    </section>
  );
}
