// Words for names the hub sends (conversation states, the default dispositions); names
// without a translation (a company's own dispositions) are shown as they are.
import type { Translator } from "./i18n";

function label(t: Translator, key: string, name: string): string {
  const text = t.t(key as "status.closed");
  return text === key ? name : text;
}

export const statusLabel = (t: Translator, status: string): string =>
  label(t, `status.${status}`, status);

export const dispositionLabel = (t: Translator, name: string): string =>
  label(t, `disposition.${name}`, name);
