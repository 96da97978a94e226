import { describe, expect, it } from 'vitest';
import { PictureHub } from './pictureHub';
import type { Picture } from './picture';

const pic = (id: string): Picture => ({ kind: 'jpeg', id, width: 1, height: 1, producedMs: 0, data: new Uint8Array([0xff, 0xd8]) });

describe('PictureHub', () => {
  it('routes pictures by user id and stops after unsubscribe', () => {
    const hub = new PictureHub();
    const a: string[] = [];
    const b: string[] = [];
    const offA = hub.subscribe('a', (p) => a.push(p.id));
    hub.subscribe('b', (p) => b.push(p.id));
    expect(hub.publish(pic('a'))).toBe(true);
    expect(hub.publish(pic('b'))).toBe(true);
    expect(hub.publish(pic('nobody'))).toBe(false);
    offA();
    expect(hub.publish(pic('a'))).toBe(false);
    expect(a).toEqual(['a']);
    expect(b).toEqual(['b']);
  });

  it('delivers to every listener of one id', () => {
    const hub = new PictureHub();
    let n = 0;
    hub.subscribe('local', () => n++);
    const off = hub.subscribe('local', () => n++);
    hub.publish(pic('local'));
    off();
    hub.publish(pic('local'));
    expect(n).toBe(3);
  });
});
