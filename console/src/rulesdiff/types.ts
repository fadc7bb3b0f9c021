// The JSON of POST /api/rules/diff (hub/replay/diff.py Summary; docs/rules.md).

export interface Decision {
  queue: string;
  priority: string;
  sla_seconds: number | null;
  skills: string[];
  agent: string | null;
  instructions: string[];
  tags: string[];
  auto_reply: string | null;
  rules: string[];
  revision: string | null;
}

export interface TraceEntry {
  rule: string;
  result: string;
  set?: Record<string, unknown>;
  error?: string;
}

export interface Example {
  message_id: string;
  conversation_id: string;
  channel: string;
  inbox: string;
  received_at: number;
  subject: string;
  excerpt: string;
  has_context: boolean;
  recorded: Decision | null;
  old: Decision;
  new: Decision;
  old_trace: TraceEntry[];
  new_trace: TraceEntry[];
}

export interface Move {
  old_queue: string;
  new_queue: string;
  messages: number;
  examples: string[];
}

export interface Change {
  old: string | number | null;
  new: string | number | null;
  messages: number;
  examples: string[];
}

export interface Counted {
  name: string;
  messages: number;
  examples: string[];
}

export interface Summary {
  against: string;
  proposed: string;
  messages: number;
  without_context: number;
  changed: number;
  queues: Move[];
  priorities: Change[];
  slas: Change[];
  newly_firing: Counted[];
  stopped_firing: Counted[];
  never_firing: string[];
  instructions_added: Counted[];
  instructions_lost: Counted[];
  auto_replies: { old: number; new: number; gained: Counted[]; lost: Counted[]; changed: number };
  errors: { side: string; rule: string; messages: number; error: string }[];
  recorded_revisions: Record<string, number>;
  examples: Record<string, Example>;
}

export interface Problem {
  line: number | null;
  column: number | null;
  message: string;
  text: string;
}

export type Outcome =
  | { kind: "summary"; summary: Summary }
  | { kind: "invalid"; problems: Problem[] }
  | { kind: "failed"; message: string };

/** Ask the hub to replay stored traffic through `rules` (YAML text). */
export async function requestDiff(
  rules: string,
  options: { since: string; against: string; channels: string[] },
): Promise<Outcome> {
  const query = new URLSearchParams({ since: options.since, against: options.against || "CURRENT" });
  for (const channel of options.channels) query.append("channel", channel);
  let response: Response;
  try {
    response = await fetch(`/api/rules/diff?${query}`, {
      method: "POST",
      headers: { "Content-Type": "text/yaml" },
      body: rules,
      credentials: "same-origin",
    });
  } catch {
    return { kind: "failed", message: "The hub cannot be reached." };
  }
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (response.ok) return { kind: "summary", summary: body as unknown as Summary };
  if (body.error === "invalid_rules" && Array.isArray(body.problems)) {
    return { kind: "invalid", problems: body.problems as Problem[] };
  }
  return { kind: "failed", message: String(body.message || `The hub answered ${response.status}.`) };
}

/** "3600" seconds as "1h", the way rules files write durations. */
export function duration(value: string | number | null): string {
  if (value === null || value === undefined) return "none";
  if (typeof value === "string") return value;
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]] as const) {
    if (value >= size && value % size === 0) return `${value / size}${unit}`;
  }
  return `${value}s`;
}
