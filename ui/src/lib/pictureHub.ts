// Routes pictures from the one video channel to the canvases that show them, by the key of
// their origin (`originKey`: the local camera or a participant).

import { originKey } from './origin';
import type { Picture } from './picture';

export type PictureListener = (picture: Picture) => void;

export class PictureHub {
  private readonly listeners = new Map<string, Set<PictureListener>>();

  /** Listens for pictures of the origin key `id`; returns the function that stops listening. */
  subscribe(id: string, listener: PictureListener): () => void {
    let set = this.listeners.get(id);
    if (!set) {
      set = new Set();
      this.listeners.set(id, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  /** Hands a picture to everyone listening for its origin; false when nobody was. */
  publish(picture: Picture): boolean {
    const set = this.listeners.get(originKey(picture.origin));
    if (!set) return false;
    for (const listener of set) listener(picture);
    return true;
  }
}
