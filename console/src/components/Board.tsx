import { useState } from "preact/hooks";

import { send } from "../connection";
import { useT } from "../context";
import type { AgentRow } from "../protocol.gen";
import type { State } from "../state";
import { store } from "../store";
import { DayFigures } from "./DayFigures";

function Reassign(props: { conversation: string; agents: { id: string; name: string }[]; holder: string }) {
  const t = useT();
  const others = props.agents.filter((a) => a.id !== props.holder);
  const [to, setTo] = useState(others[0]?.id ?? "");
  const id = `reassign-${props.conversation}`;
  if (!others.length) return <span>{props.conversation}</span>;
  return (
    <form
      class="reassign"
      onSubmit={(event) => {
        event.preventDefault();
        send({ type: "reassign", conversation_id: props.conversation, agent: to });
      }}
    >
      <label for={id}>{t.t("board.reassign", { conversation: props.conversation })}</label>
      <select id={id} value={to} onChange={(event) => setTo((event.currentTarget as HTMLSelectElement).value)}>
        {others.map((agent) => (
          <option value={agent.id} key={agent.id}>
            {agent.name}
          </option>
        ))}
      </select>
      <button type="submit">{t.t("board.reassignSubmit")}</button>
    </form>
  );
}

export function Board(props: { state: State }) {
  const t = useT();
  const board = props.state.board;
  const colleagues = props.state.hello?.agents ?? [];
  const name = (row: AgentRow) => colleagues.find((a) => a.id === row.id)?.name ?? row.id;
  return (
    <main id="main" class="pane board">
      <header class="board-head">
        <button
          type="button"
          class="back"
          aria-label={t.t("actions.back")}
          onClick={() => store.set({ ...store.get(), view: "mine", active: null })}
        >
          ←
        </button>
        <h2>{t.t("board.heading")}</h2>
      </header>
      {props.state.notice && (
        <p class="notice" role="status">
          {props.state.notice}
        </p>
      )}
      {!board ? (
        <p>{t.t("board.noData")}</p>
      ) : (
        <>
          <div class="table-scroll" tabIndex={0} role="region" aria-labelledby="board-queues">
            <table id="queues">
              <caption id="board-queues">{t.t("board.queues")}</caption>
              <thead>
                <tr>
                  <th scope="col">{t.t("board.queue")}</th>
                  <th scope="col">{t.t("board.waiting")}</th>
                  <th scope="col">{t.t("board.offered")}</th>
                  <th scope="col">{t.t("board.oldest")}</th>
                  <th scope="col">{t.t("board.atRisk")}</th>
                </tr>
              </thead>
              <tbody>
                {board.queues.map((queue) => (
                  <tr key={queue.name} data-queue={queue.name} class={queue.sla_at_risk ? "at-risk" : ""}>
                    <th scope="row">{queue.name}</th>
                    <td>{t.number(queue.waiting)}</td>
                    <td>{t.number(queue.offered)}</td>
                    <td>{t.duration(queue.oldest_wait)}</td>
                    <td>{t.number(queue.sla_at_risk)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <div class="table-scroll" tabIndex={0} role="region" aria-labelledby="board-agents">
            <table id="agents">
              <caption id="board-agents">{t.t("board.agents")}</caption>
              <thead>
                <tr>
                  <th scope="col">{t.t("board.agent")}</th>
                  <th scope="col">{t.t("board.presence")}</th>
                  <th scope="col">{t.t("board.load")}</th>
                  <th scope="col">{t.t("board.offers")}</th>
                  <th scope="col">{t.t("board.conversations")}</th>
                </tr>
              </thead>
              <tbody>
                {board.agents.map((agent) => (
                  <tr key={agent.id} data-agent={agent.id} class="agent">
                    <th scope="row">{name(agent)}</th>
                    <td class={`presence-${agent.presence}`}>
                      {t.t(`presence.${agent.presence}`)}
                      {agent.wrap_up ? ` (${t.t("board.wrapUp")})` : ""}
                    </td>
                    <td>{`${agent.conversations}/${agent.capacity}`}</td>
                    <td>{t.number(agent.offers)}</td>
                    <td>
                      {agent.assigned.map((conversation) => (
                        <Reassign
                          key={conversation}
                          conversation={conversation}
                          agents={colleagues}
                          holder={agent.id}
                        />
                      ))}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <DayFigures />
    </main>
  );
}
