// Delivers meeting events to listeners, in order.
//
// Events that happen before anyone listens (the welcome's publications, an event that came
// right behind the welcome) are held until the first listener is added, then delivered after
// the code that added it has run to its end, so listeners added one after another all get
// them. This is the Rust SDK's "the first stream gets everything since the welcome".

import type { EventOf, MeetingEvent, MeetingEventName } from "./events.js";

export type Listener<K extends MeetingEventName> = (event: EventOf<K>) => void;
export type AnyListener = (event: MeetingEvent) => void;

export class Emitter {
  private readonly named = new Map<MeetingEventName, Set<(event: MeetingEvent) => void>>();
  private readonly any = new Set<AnyListener>();
  /** Held until the first listener; null once delivered. */
  private held: MeetingEvent[] | null = [];
  private flushScheduled = false;

  on<K extends MeetingEventName>(name: K, listener: Listener<K>): void {
    let set = this.named.get(name);
    if (!set) {
      set = new Set();
      this.named.set(name, set);
    }
    // Stored untyped: `emit` only hands it events whose name is `name`.
    set.add(listener as (event: MeetingEvent) => void);
    this.scheduleFlush();
  }

  off<K extends MeetingEventName>(name: K, listener: Listener<K>): void {
    this.named.get(name)?.delete(listener as (event: MeetingEvent) => void);
  }

  onAny(listener: AnyListener): void {
    this.any.add(listener);
    this.scheduleFlush();
  }

  offAny(listener: AnyListener): void {
    this.any.delete(listener);
  }

  emit(events: MeetingEvent[]): void {
    if (this.held !== null) {
      this.held.push(...events);
      return;
    }
    for (const event of events) this.deliver(event);
  }

  private scheduleFlush(): void {
    if (this.held === null || this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      const held = this.held ?? [];
      this.held = null;
      for (const event of held) this.deliver(event);
    });
  }

  private deliver(event: MeetingEvent): void {
    // Copies: a listener removing itself (or another) must not skip anyone this time.
    const listeners = [...(this.named.get(event.event) ?? []), ...this.any];
    for (const listener of listeners) {
      try {
        listener(event);
      } catch (e) {
        // A listener's bug is the app's to see, but must not stop the SDK's own handling
        // of the frame that caused the event, nor the other listeners.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}
