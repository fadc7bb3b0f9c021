// Telling the agent that work arrived: the window title, a short tone (muteable) and, once
// permitted, a desktop notification while the console is in the background.

let audio: AudioContext | null = null;

/** A short two-note chime made with WebAudio: no sound file to serve or allow in the CSP. */
export function chime(): void {
  try {
    audio ??= new AudioContext();
    const start = audio.currentTime;
    for (const [offset, frequency] of [
      [0, 880],
      [0.15, 1320],
    ] as const) {
      const oscillator = audio.createOscillator();
      const gain = audio.createGain();
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.2, start + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.14);
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start(start + offset);
      oscillator.stop(start + offset + 0.15);
    }
  } catch {
    // no audio device (or not allowed before a user gesture): the title still tells
  }
}

export function notificationsAllowed(): boolean {
  return typeof Notification !== "undefined" && Notification.permission === "granted";
}

export function notificationsPossible(): boolean {
  return typeof Notification !== "undefined" && Notification.permission !== "denied";
}

export async function askForNotifications(): Promise<boolean> {
  if (typeof Notification === "undefined") return false;
  return (await Notification.requestPermission()) === "granted";
}

/** A desktop notification, only when the console is not what the agent looks at. */
export function desktop(title: string, body: string, tag: string): void {
  if (!notificationsAllowed() || document.visibilityState === "visible") return;
  try {
    const note = new Notification(title, { body, tag });
    note.onclick = () => {
      window.focus();
      note.close();
    };
  } catch {
    // some browsers only allow notifications from a service worker
  }
}
