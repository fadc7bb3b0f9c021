import { useState } from "preact/hooks";

import { send } from "../connection";
import { useT } from "../context";
import { LANGUAGES, type Lang } from "../i18n";
import { askForNotifications, notificationsAllowed, notificationsPossible } from "../notify";
import { remaining, type Presence, type State } from "../state";
import { store, useNow } from "../store";

export function LanguagePicker(props: { lang: Lang; onLang: (lang: Lang) => void; id: string }) {
  const t = useT();
  return (
    <select
      id={props.id}
      class="language"
      aria-label={t.t("header.language")}
      value={props.lang}
      onChange={(event) => props.onLang((event.currentTarget as HTMLSelectElement).value as Lang)}
    >
      {LANGUAGES.map((lang) => (
        <option value={lang} key={lang}>
          {lang === "de" ? "Deutsch" : "English"}
        </option>
      ))}
    </select>
  );
}

/** The wrap-up countdown after a close (its own node: it re-renders every second). */
function WrapUp(props: { until: number | null; length: number }) {
  const t = useT();
  const left = remaining(props.until, useNow());
  if (left === null || left <= 0) return null;
  return (
    <span id="wrap-up" class="badge wrap" role="timer">
      {t.t("wrapup.left", { seconds: Math.min(Math.ceil(left), Math.ceil(props.length)) })}
    </span>
  );
}

export function TopBar(props: {
  state: State;
  sound: boolean;
  onSound: (on: boolean) => void;
  lang: Lang;
  onLang: (lang: Lang) => void;
  onHelp: () => void;
  onLogout: () => void;
}) {
  const t = useT();
  const { state } = props;
  const [alerts, setAlerts] = useState(notificationsAllowed());
  const presences: Presence[] = ["available", "busy", "away"];
  return (
    <header class="topbar">
      <strong class="brand">{t.t("app.title")}</strong>
      <span id="agent-name">{state.hello?.agent.name ?? ""}</span>
      <span class="presence">
        <select
          id="presence"
          aria-label={t.t("header.presence")}
          value={state.presence}
          class={`presence-${state.presence}`}
          onChange={(event) =>
            send({
              type: "presence",
              status: (event.currentTarget as HTMLSelectElement).value as Presence,
            })
          }
        >
          {presences.map((p) => (
            <option value={p} key={p}>
              {t.t(`presence.${p}`)}
            </option>
          ))}
        </select>
        <span class="since">{t.t("presence.since", { time: t.time(state.presenceSince) })}</span>
      </span>
      <WrapUp until={state.wrapUpUntil} length={state.hello?.wrap_up ?? 0} />
      <span id="connection" class={`badge ${state.connection}`} aria-live="polite">
        {t.t(`connection.${state.connection}`)}
      </span>
      <button
        type="button"
        id="offers-jump"
        class="badge offers-jump"
        hidden={!state.offers.length}
        onClick={() => store.set({ ...store.get(), active: null, view: "mine" })}
      >
        {`${t.t("view.offers")}: ${state.offers.length}`}
      </button>
      <span class="tools">
        <button
          type="button"
          id="sound"
          aria-pressed={props.sound}
          onClick={() => props.onSound(!props.sound)}
        >
          {props.sound ? t.t("header.sound.on") : t.t("header.sound.off")}
        </button>
        {notificationsPossible() && !alerts && (
          <button
            type="button"
            id="desktop-alerts"
            onClick={() => void askForNotifications().then(setAlerts)}
          >
            {t.t("header.notifications")}
          </button>
        )}
        <LanguagePicker lang={props.lang} onLang={props.onLang} id="language" />
        <button
          type="button"
          id="help"
          aria-keyshortcuts="?"
          aria-label={t.t("header.help")}
          onClick={props.onHelp}
        >
          ?
        </button>
        <button type="button" id="logout" onClick={props.onLogout}>
          {t.t("header.logout")}
        </button>
      </span>
    </header>
  );
}
