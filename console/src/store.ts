// One observable holder of the console's state; components subscribe with useStore().
import { useEffect, useState } from "preact/hooks";

import { initialState, type State } from "./state";

type Listener = (state: State) => void;

export class Store {
  private listeners = new Set<Listener>();
  constructor(public state: State) {}

  get(): State {
    return this.state;
  }

  set(next: State): void {
    if (next === this.state) return;
    this.state = next;
    for (const listener of this.listeners) listener(next);
  }

  update(change: (state: State) => State): void {
    this.set(change(this.state));
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export const store = new Store(initialState(Date.now() / 1000));

export function useStore(): State {
  const [state, setState] = useState(store.get());
  useEffect(() => store.subscribe(setState), []);
  return state;
}

/** The current time in epoch seconds, re-rendered every second (countdowns). */
export function useNow(): number {
  const [now, setNow] = useState(Date.now() / 1000);
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now() / 1000), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}
