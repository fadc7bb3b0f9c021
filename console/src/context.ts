import { createContext } from "preact";
import { useContext } from "preact/hooks";

import { translator, type Translator } from "./i18n";

export const I18n = createContext<Translator>(translator("en"));

export function useT(): Translator {
  return useContext(I18n);
}
