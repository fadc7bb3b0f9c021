// The supervisor board's figures of the day, per queue and per agent, from the hub's
// reports (GET /api/reports/{queue,agent}, docs/reports.md): what the hub already records.
import { useEffect, useState } from "preact/hooks";

import { useT } from "../context";
import type { Translator } from "../i18n";

interface ReportRow {
  queue?: string;
  agent?: string;
  conversations: number;
  first_response_p50: number | null;
  handling_p50: number | null;
  sla_attainment: number | null;
  abandoned: number;
  transfers: number;
  closed: number;
  satisfaction: number | null;
}

async function report(by: "queue" | "agent"): Promise<ReportRow[]> {
  const response = await fetch(`/api/reports/${by}`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return ((await response.json()) as { rows: ReportRow[] }).rows;
}

const REFRESH_MS = 60_000;

function cells(row: ReportRow, t: Translator): string[] {
  const time = (seconds: number | null) => (seconds === null ? "–" : t.duration(seconds));
  return [
    t.number(row.conversations),
    time(row.first_response_p50),
    time(row.handling_p50),
    row.sla_attainment === null ? "–" : `${t.number(Math.round(row.sla_attainment * 100))} %`,
    t.number(row.abandoned),
    t.number(row.transfers),
    t.number(row.closed),
    row.satisfaction === null ? "–" : t.number(row.satisfaction, { maximumFractionDigits: 1 }),
  ];
}

function Table(props: { id: string; caption: string; first: string; rows: ReportRow[]; by: "queue" | "agent" }) {
  const t = useT();
  const heads = ["day.conversations", "day.firstResponse", "day.handling", "day.sla", "day.abandoned", "day.transfers", "day.closed", "day.csat"] as const;
  return (
    <div class="table-scroll" tabIndex={0} role="region" aria-labelledby={`${props.id}-caption`}>
      <table id={props.id}>
        <caption id={`${props.id}-caption`}>{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">{props.first}</th>
            {heads.map((key) => (
              <th scope="col" key={key}>
                {t.t(key)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((row) => {
            const name = (props.by === "queue" ? row.queue : row.agent) ?? "";
            return (
              <tr key={name} data-row={name}>
                <th scope="row">{name}</th>
                {cells(row, t).map((cell, index) => (
                  <td key={index}>{cell}</td>
                ))}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function DayFigures() {
  const t = useT();
  const [queues, setQueues] = useState<ReportRow[] | null>(null);
  const [agents, setAgents] = useState<ReportRow[] | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    const load = () =>
      Promise.all([report("queue"), report("agent")])
        .then(([q, a]) => {
          setQueues(q);
          setAgents(a);
          setFailed(false);
        })
        .catch(() => setFailed(true));
    void load();
    const timer = setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  }, []);
  return (
    <section class="day-figures" aria-labelledby="day-heading">
      <h3 id="day-heading">{t.t("day.heading")}</h3>
      {failed && <p class="error">{t.t("day.failed")}</p>}
      {queues && <Table id="day-queues" caption={t.t("day.queues")} first={t.t("board.queue")} rows={queues} by="queue" />}
      {agents && <Table id="day-agents" caption={t.t("day.agents")} first={t.t("board.agent")} rows={agents} by="agent" />}
    </section>
  );
}
