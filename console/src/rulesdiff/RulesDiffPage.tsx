import { useEffect, useRef, useState } from "preact/hooks";

import { SummaryView } from "./SummaryView";
import { type Outcome, type Problem, requestDiff } from "./types";

type Access = "checking" | "anonymous" | "forbidden" | "admin";

/** The caret in `area` at the start of `line`, column `column` (both from 1). */
function showPosition(area: HTMLTextAreaElement | null, line: number, column: number): void {
  if (!area) return;
  const lines = area.value.split("\n");
  let offset = 0;
  for (let index = 0; index < line - 1 && index < lines.length; index += 1) {
    offset += lines[index].length + 1;
  }
  offset += Math.max(0, column - 1);
  area.focus();
  area.setSelectionRange(offset, offset);
}

function Problems(props: { problems: Problem[]; onShow: (problem: Problem) => void }) {
  return (
    <section id="problems" aria-labelledby="problems-heading">
      <h2 id="problems-heading">The rules file has {props.problems.length} problem(s)</h2>
      <ul>
        {props.problems.map((problem, index) => (
          <li key={index}>
            {problem.line !== null ? (
              <button type="button" class="link" onClick={() => props.onShow(problem)}>
                line {problem.line}, column {problem.column}
              </button>
            ) : null}{" "}
            <span class="error">{problem.message}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

export function RulesDiffPage() {
  const [access, setAccess] = useState<Access>("checking");
  const [rules, setRules] = useState("");
  const [since, setSince] = useState("7d");
  const [against, setAgainst] = useState("CURRENT");
  const [channels, setChannels] = useState("");
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const area = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    fetch("/api/me", { credentials: "same-origin" })
      .then(async (response) => {
        if (!response.ok) return setAccess("anonymous");
        const body = (await response.json()) as { agent?: { role?: string } };
        setAccess(body.agent?.role === "admin" ? "admin" : "forbidden");
      })
      .catch(() => setAccess("anonymous"));
  }, []);

  const upload = async (event: Event) => {
    const input = event.currentTarget as HTMLInputElement;
    const file = input.files?.[0];
    if (file) setRules(await file.text());
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setOutcome(null);
    try {
      const wanted = channels
        .split(",")
        .map((name) => name.trim())
        .filter(Boolean);
      setOutcome(await requestDiff(rules, { since, against, channels: wanted }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="rules-diff">
      <header>
        <h1>Replay a rules change</h1>
        <a href="/console/">Back to the console</a>
      </header>
      {access === "checking" ? <p class="empty">Checking your session…</p> : null}
      {access === "anonymous" ? (
        <p id="access" class="error">
          Log in to the <a href="/console/">console</a> as an admin first, then come back.
        </p>
      ) : null}
      {access === "forbidden" ? (
        <p id="access" class="error">
          Only admins may replay rules changes.
        </p>
      ) : null}
      {access === "admin" ? (
        <form id="diff-form" onSubmit={submit}>
          <p class="hint">
            Paste a changed rules file, or upload one. The hub replays the messages it stored in
            the period, each with what the rules saw when it arrived, through the running rules
            and through yours, and shows what would change. Nothing is routed differently until
            you deploy the file.
          </p>
          <label for="rules-text">Proposed rules file (YAML)</label>
          <textarea
            id="rules-text"
            rows={16}
            spellcheck={false}
            value={rules}
            onInput={(event) => setRules((event.currentTarget as HTMLTextAreaElement).value)}
            ref={area}
            required
          />
          <div class="options">
            <label>
              Upload a file
              <input id="rules-file" type="file" accept=".yaml,.yml,text/yaml" onChange={upload} />
            </label>
            <label>
              Period
              <select
                id="since"
                value={since}
                onChange={(event) => setSince((event.currentTarget as HTMLSelectElement).value)}
              >
                <option value="1d">last day</option>
                <option value="7d">last 7 days</option>
                <option value="30d">last 30 days</option>
                <option value="90d">last 90 days</option>
              </select>
            </label>
            <label>
              Compare with
              <input
                id="against"
                value={against}
                onInput={(event) => setAgainst((event.currentTarget as HTMLInputElement).value)}
                title="CURRENT, or the SHA-256 of a stored revision"
              />
            </label>
            <label>
              Channels (comma-separated, empty: all)
              <input
                id="channels"
                value={channels}
                onInput={(event) => setChannels((event.currentTarget as HTMLInputElement).value)}
              />
            </label>
          </div>
          <button type="submit" id="replay" class="primary" disabled={busy}>
            {busy ? "Replaying…" : "Replay"}
          </button>
        </form>
      ) : null}
      <div aria-live="polite">
        {outcome?.kind === "invalid" ? (
          <Problems
            problems={outcome.problems}
            onShow={(problem) => showPosition(area.current, problem.line ?? 1, problem.column ?? 1)}
          />
        ) : null}
        {outcome?.kind === "failed" ? (
          <p id="failure" class="error" role="alert">
            {outcome.message}
          </p>
        ) : null}
        {outcome?.kind === "summary" ? <SummaryView summary={outcome.summary} /> : null}
      </div>
    </main>
  );
}
