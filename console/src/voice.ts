// Phone calls in the console, pure: the `call` frame applied to the state, the words the
// call views use (English and German), and which messages carry a recording. The views are
// in components/Voice.tsx; state.ts and the panes only hand over to these.

import type { CallFrame, CallItem, Conversation, Message, OfferView } from "./protocol.gen";
import type { Lang } from "./i18n";
import type { State } from "./state";

const words = {
  en: {
    "pop.heading": "Incoming call",
    "pop.caller": "Caller",
    "pop.history": "Earlier conversations",
    "pop.instructions": "Instructions",
    "pop.none": "No earlier conversations",
    "call.heading": "Call",
    "call.back": "Call back",
    "call.calling": "Calling…",
    "call.recordings": "Recordings",
    "call.hold": "Hold",
    "call.resume": "Resume",
    "state.ringing": "ringing",
    "state.queued": "waiting in line",
    "state.offered": "offered",
    "state.answered": "answered by {agent}",
    "state.held": "on hold",
    "state.resumed": "resumed",
    "state.transferred": "transferred to {agent}",
    "state.voicemail": "went to voicemail",
    "state.callback_requested": "callback requested",
    "state.callback_dialed": "calling back",
    "state.recording": "recording ({duration})",
    "state.abandoned": "caller hung up while waiting",
    "state.ended": "ended after {duration}",
    "state.failed": "failed",
  },
  de: {
    "pop.heading": "Eingehender Anruf",
    "pop.caller": "Anrufer",
    "pop.history": "Frühere Vorgänge",
    "pop.instructions": "Hinweise",
    "pop.none": "Keine früheren Vorgänge",
    "call.heading": "Anruf",
    "call.back": "Zurückrufen",
    "call.calling": "Ruft an…",
    "call.recordings": "Aufnahmen",
    "call.hold": "Halten",
    "call.resume": "Fortsetzen",
    "state.ringing": "klingelt",
    "state.queued": "in der Warteschlange",
    "state.offered": "angeboten",
    "state.answered": "angenommen von {agent}",
    "state.held": "gehalten",
    "state.resumed": "fortgesetzt",
    "state.transferred": "weitergeleitet an {agent}",
    "state.voicemail": "auf die Mailbox gegangen",
    "state.callback_requested": "Rückruf gewünscht",
    "state.callback_dialed": "Rückruf läuft",
    "state.recording": "Aufnahme ({duration})",
    "state.abandoned": "Anrufer hat beim Warten aufgelegt",
    "state.ended": "beendet nach {duration}",
    "state.failed": "fehlgeschlagen",
  },
} as const;

export type VoiceWord = keyof (typeof words)["en"];

export function voiceWord(lang: Lang, key: VoiceWord, vars: Record<string, string> = {}): string {
  const text: string = words[lang]?.[key] ?? words.en[key];
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => vars[name] ?? whole);
}

/** Seconds as m:ss. */
export function clock(seconds: number | null): string {
  const total = Math.max(0, Math.round(seconds ?? 0));
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

/** One call event in words (its detail, if any, after a dash). */
export function describe(lang: Lang, call: CallItem, agentName: (id: string) => string): string {
  const key = `state.${call.state}` as VoiceWord;
  const known = key in words.en;
  const text = known
    ? voiceWord(lang, key, {
        agent: call.agent ? agentName(call.agent) : "?",
        duration: clock(call.duration),
      })
    : call.state;
  return call.detail && call.state !== "recording" ? `${text} — ${call.detail}` : text;
}

export function isCall(conversation: { channel: string }): boolean {
  return conversation.channel === "voice";
}

/** The offer a screen pop shows: the first open voice offer. */
export function ringing(offers: OfferView[]): OfferView | null {
  return offers.find(isCall) ?? null;
}

/** Messages of a call's conversation that carry a recording (a voicemail, a call). */
export function recordings(conversation: Conversation): Message[] {
  return conversation.messages.filter((m) =>
    (m.attachments ?? []).some((file) => file.content_type.startsWith("audio/")),
  );
}

/** Whether the agent may call the customer back from this conversation. */
export function canCallBack(conversation: Conversation): boolean {
  return isCall(conversation) && conversation.status !== "closed";
}

const LIVE = new Set(["answered", "held", "resumed", "transferred"]);
const OVER = new Set(["ended", "abandoned", "voicemail", "failed"]);

/** Whether an agent is on the call now: answered (or held since) and not ended. */
export function connected(conversation: Conversation): boolean {
  const calls = conversation.calls ?? [];
  const last = [...calls].reverse().find((c) => LIVE.has(c.state) || OVER.has(c.state));
  return last !== undefined && LIVE.has(last.state);
}

/** Whether the caller is on hold now (the last hold event says so). */
export function onHold(conversation: Conversation): boolean {
  const calls = conversation.calls ?? [];
  const last = [...calls].reverse().find((c) => c.state === "held" || c.state === "resumed");
  return last?.state === "held";
}

/** Apply a `call` frame: the event joins the held conversation's calls (once). */
export function withCall(state: State, frame: CallFrame): State {
  const held = state.open[frame.conversation_id];
  if (!held) return state;
  const calls = held.conversation.calls ?? [];
  const same = (c: CallItem) =>
    c.call_sid === frame.call.call_sid && c.state === frame.call.state && c.agent === frame.call.agent;
  if (calls.some(same)) return state;
  const conversation = { ...held.conversation, calls: [...calls, frame.call] };
  return { ...state, open: { ...state.open, [frame.conversation_id]: { ...held, conversation } } };
}
