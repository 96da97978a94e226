// The subscribers of one kind of backend event (`onSession`, `onMeetingEvent`, ...), for the
// backends that deliver events themselves rather than through Tauri: the browser's and the
// dev fake.

import type { Unlisten } from './types';

export type Listener<T> = (value: T) => void;

export class Listeners<T> {
  private readonly set = new Set<Listener<T>>();

  /** Subscribes, answering the way `Backend`'s `on…` methods do. */
  add(l: Listener<T>): Promise<Unlisten> {
    this.set.add(l);
    return Promise.resolve(() => void this.set.delete(l));
  }

  emit(value: T) {
    this.set.forEach((l) => l(value));
  }
}
