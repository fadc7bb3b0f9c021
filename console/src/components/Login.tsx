import { useState } from "preact/hooks";

import { useT } from "../context";
import type { Lang } from "../i18n";
import { LanguagePicker } from "./TopBar";

export function Login(props: {
  hidden: boolean;
  onLoggedIn: () => void;
  lang: Lang;
  onLang: (lang: Lang) => void;
}) {
  const t = useT();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    setError("");
    setBusy(true);
    try {
      const response = await fetch("/api/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: data.get("username"), password: data.get("password") }),
        credentials: "same-origin",
      });
      if (response.ok) {
        (form.elements.namedItem("password") as HTMLInputElement).value = "";
        props.onLoggedIn();
        return;
      }
      const body = (await response.json().catch(() => ({}))) as { message?: string };
      setError(body.message || t.t("login.failed"));
    } catch {
      setError(t.t("login.unreachable"));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="login" hidden={props.hidden}>
      <h1>{t.t("app.title")}</h1>
      <form id="login-form" onSubmit={submit}>
        <h2>{t.t("login.heading")}</h2>
        <label>
          {t.t("login.user")}
          <input name="username" id="username" autocomplete="username" required />
        </label>
        <label>
          {t.t("login.password")}
          <input
            name="password"
            id="password"
            type="password"
            autocomplete="current-password"
            required
          />
        </label>
        <button type="submit" id="login-button" class="primary" disabled={busy}>
          {t.t("login.submit")}
        </button>
        <p id="login-error" class="error" role="alert">
          {error}
        </p>
      </form>
      <LanguagePicker lang={props.lang} onLang={props.onLang} id="login-language" />
    </main>
  );
}
