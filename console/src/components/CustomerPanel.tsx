import { useState } from "preact/hooks";

import { useT } from "../context";
import { statusLabel } from "../labels";
import type { Conversation, PastConversation } from "../protocol.gen";
import { select, type State } from "../state";
import { store } from "../store";
import { Claims, CustomerNotes } from "./CustomerWork";
import { PastDialog } from "./Dialogs";

interface Row {
  label: string;
  value: string | number | null | undefined;
}

export function CustomerPanel(props: { conversation: Conversation; state: State; held: boolean }) {
  const t = useT();
  const [past, setPast] = useState<PastConversation | null>(null);
  const customer = props.conversation.customer;
  const rows: Row[] = [];
  if (!customer.known) {
    rows.push({ label: t.t("customer.heading"), value: t.t("customer.new") });
  } else {
    rows.push({ label: t.t("customer.number"), value: customer.customer_number });
    rows.push({ label: t.t("customer.company"), value: customer.company });
    rows.push({
      label: t.t("label.tier"),
      value: customer.tier
        ? customer.tier_source === "manual"
          ? t.t("customer.manual", { tier: customer.tier })
          : customer.tier
        : t.t("tier.none"),
    });
    rows.push({ label: t.t("customer.value"), value: t.money(customer.lifetime_value) });
    rows.push({ label: t.t("customer.orders"), value: customer.orders_12m });
    if (customer.last_order_at) {
      const when = t.t("customer.lastOrderValue", {
        date: t.date(customer.last_order_at),
        days: customer.days_since_last_order ?? 0,
      });
      rows.push({
        label: t.t("customer.lastOrder"),
        value: customer.last_purchase ? `${when}: ${customer.last_purchase}` : when,
      });
    }
    rows.push({
      label: t.t("customer.punctuality"),
      value:
        customer.payment_punctuality === null
          ? t.t("customer.noInvoice")
          : `${t.number(Math.round(customer.payment_punctuality * 100))} %`,
    });
    rows.push({ label: t.t("customer.overdue"), value: customer.overdue_invoices });
  }
  rows.push({ label: t.t("customer.open"), value: customer.open_conversations });
  if (customer.tags.length) rows.push({ label: t.t("customer.tags"), value: customer.tags.join(", ") });

  const open = (item: PastConversation) => {
    const state = store.get();
    const known = state.open[item.id] || state.closed.some((e) => e.conversation.id === item.id);
    if (known) store.set(select(state, item.id));
    else setPast(item);
  };

  return (
    <aside class="customer-panel" aria-labelledby="customer-heading">
      <h3 id="customer-heading">{t.t("customer.heading")}</h3>
      <dl id="context">
        {rows
          .filter((row) => row.value !== null && row.value !== undefined && row.value !== "")
          .map((row, index) => [
            <dt key={`t${index}`}>{row.label}</dt>,
            <dd key={`d${index}`}>{String(row.value)}</dd>,
          ])}
      </dl>
      <Claims conversation={props.conversation} held={props.held} />
      <CustomerNotes conversation={props.conversation} held={props.held} />
      <h4>{t.t("customer.history")}</h4>
      <ul id="history">
        {customer.history.map((item) => (
          <li key={item.id}>
            <button type="button" class="link" onClick={() => open(item)}>
              {[t.date(item.created_at), item.channel, statusLabel(t, item.status), item.subject]
                .filter(Boolean)
                .join(" · ")}
            </button>
          </li>
        ))}
      </ul>
      {!customer.history.length && <p class="empty">{t.t("customer.historyEmpty")}</p>}
      {past && <PastDialog past={past} onClose={() => setPast(null)} />}
    </aside>
  );
}
