// The page's side of tiles.ts: one ResizeObserver for the tiles' sizes (in device pixels
// where the browser measures them so, else CSS pixels x devicePixelRatio), one
// IntersectionObserver for tiles scrolled out of view, and the page's visibility (a
// minimised window or a background tab hides the page). Everything goes to a
// `TileReporter`, which decides when to tell the backend.

import { devicePixels, TileReporter, type Box } from './tiles';

export interface TileWatch {
  /** Watches one tile's element; returns what stops it. */
  observe(element: Element, userId: string): () => void;
  /** Tells the sizes again (the session is new: the server has forgotten them). */
  resend(): void;
  stop(): void;
}

function boxOf(entry: ResizeObserverEntry): Box {
  const device = entry.devicePixelContentBoxSize?.[0];
  if (device) return { width: Math.round(device.inlineSize), height: Math.round(device.blockSize) };
  const css = entry.contentBoxSize?.[0];
  const [w, h] = css ? [css.inlineSize, css.blockSize] : [entry.contentRect.width, entry.contentRect.height];
  return devicePixels(w, h, window.devicePixelRatio);
}

export function watchTiles(reporter: TileReporter, doc: Document = document): TileWatch {
  const users = new Map<Element, string>();
  const resize =
    typeof ResizeObserver === 'undefined'
      ? null
      : new ResizeObserver((entries) => {
          for (const e of entries) {
            const user = users.get(e.target);
            if (user !== undefined) reporter.setSize(user, boxOf(e));
          }
        });
  const view =
    typeof IntersectionObserver === 'undefined'
      ? null
      : new IntersectionObserver((entries) => {
          for (const e of entries) {
            const user = users.get(e.target);
            if (user !== undefined) reporter.setInView(user, e.isIntersecting);
          }
        });
  const visibility = () => reporter.setHidden(doc.hidden);
  doc.addEventListener('visibilitychange', visibility);
  visibility();

  return {
    observe(element, userId) {
      users.set(element, userId);
      // Where the browser has no ResizeObserver, the size at the start is all there is.
      if (!resize) {
        const r = element.getBoundingClientRect();
        reporter.setSize(userId, devicePixels(r.width, r.height, window.devicePixelRatio));
      }
      resize?.observe(element);
      view?.observe(element);
      return () => {
        resize?.unobserve(element);
        view?.unobserve(element);
        if (users.get(element) === userId) users.delete(element);
        if (![...users.values()].includes(userId)) reporter.remove(userId);
      };
    },
    resend: () => reporter.resend(),
    stop() {
      doc.removeEventListener('visibilitychange', visibility);
      resize?.disconnect();
      view?.disconnect();
      users.clear();
      reporter.stop();
    },
  };
}
