// The agent websocket: connects, reconnects with backoff, feeds frames to the store and sends
// commands. Replies and notes stay pending until acknowledged and are resent after the next
// snapshot under the same client id (the hub stores each once).
import type { Translator } from "./i18n";
import { chime, desktop } from "./notify";
import type { ClientFrame, ServerFrame } from "./protocol.gen";
import { customerLabel, pendingFrames, reduce, type State } from "./state";
import { store } from "./store";

export interface Alerts {
  sound(): boolean;
  translator(): Translator;
}

let socket: WebSocket | null = null;
let backoff = 500;
let stopped = true;
let onEnded: () => void = () => {};

export function send(frame: ClientFrame): boolean {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function alert(before: State, frame: ServerFrame, alerts: Alerts): void {
  const t = alerts.translator();
  if (frame.type === "offer" && !before.offers.some((o) => o.conversation_id === frame.conversation_id)) {
    if (alerts.sound()) chime();
    const who = customerLabel(frame.customer, t.t("customer.unknown"));
    desktop(t.t("notify.offer", { who }), frame.preview, frame.conversation_id);
  } else if (frame.type === "message" && frame.message.direction === "inbound") {
    const held = before.open[frame.conversation_id];
    if (!held || held.conversation.messages.some((m) => m.id === frame.message.id)) return;
    const background = before.active !== frame.conversation_id || document.visibilityState !== "visible";
    if (!background) return;
    if (alerts.sound()) chime();
    const who = customerLabel(held.conversation.customer, t.t("customer.unknown"));
    desktop(t.t("notify.message", { who }), frame.message.text.slice(0, 140), frame.conversation_id);
  }
}

export function connect(alerts: Alerts, ended: () => void): void {
  onEnded = ended;
  stopped = false;
  open(alerts);
}

function open(alerts: Alerts): void {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws/agent`);
  socket = ws;
  store.update((s) => ({ ...s, connection: "connecting" }));
  ws.onopen = () => {
    backoff = 500;
  };
  ws.onmessage = (event: MessageEvent<string>) => {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(event.data) as ServerFrame;
    } catch {
      return;
    }
    const before = store.get();
    alert(before, frame, alerts);
    store.set(reduce(before, frame, Date.now() / 1000));
    if (frame.type === "snapshot") {
      for (const pending of pendingFrames(store.get())) send(pending);
    }
  };
  ws.onclose = (event) => {
    if (socket !== ws) return;
    socket = null;
    store.update((s) => ({ ...s, connection: "offline" }));
    if (stopped) return;
    if (event.code === 4401) {
      stopped = true;
      onEnded();
      return;
    }
    setTimeout(() => {
      if (!stopped) open(alerts);
    }, backoff);
    backoff = Math.min(backoff * 2, 15000);
  };
}

export function disconnect(): void {
  stopped = true;
  const ws = socket;
  socket = null;
  ws?.close();
  store.update((s) => ({ ...s, connection: "offline" }));
}
