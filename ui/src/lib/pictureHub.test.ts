import { describe, expect, it } from 'vitest';
import { PictureHub } from './pictureHub';
import { LOCAL, LOCAL_KEY, remote, userKey, type Origin } from './origin';
import type { Picture } from './picture';

const pic = (origin: Origin): Picture => ({ kind: 'jpeg', origin, width: 1, height: 1, producedMs: 0, data: new Uint8Array([0xff, 0xd8]) });
const idOf = (p: Picture) => (p.origin.origin === 'remote' ? p.origin.user_id : 'local');

describe('PictureHub', () => {
  it('routes pictures by user id and stops after unsubscribe', () => {
    const hub = new PictureHub();
    const a: string[] = [];
    const b: string[] = [];
    const offA = hub.subscribe(userKey('a'), (p) => a.push(idOf(p)));
    hub.subscribe(userKey('b'), (p) => b.push(idOf(p)));
    expect(hub.publish(pic(remote('a')))).toBe(true);
    expect(hub.publish(pic(remote('b')))).toBe(true);
    expect(hub.publish(pic(remote('nobody')))).toBe(false);
    offA();
    expect(hub.publish(pic(remote('a')))).toBe(false);
    expect(a).toEqual(['a']);
    expect(b).toEqual(['b']);
  });

  it('delivers to every listener of one id', () => {
    const hub = new PictureHub();
    let n = 0;
    hub.subscribe(LOCAL_KEY, () => n++);
    const off = hub.subscribe(LOCAL_KEY, () => n++);
    hub.publish(pic(LOCAL));
    off();
    hub.publish(pic(LOCAL));
    expect(n).toBe(3);
  });

  it('keeps the local camera apart from a participant whose id is "local"', () => {
    const hub = new PictureHub();
    const mine: string[] = [];
    const theirs: string[] = [];
    hub.subscribe(LOCAL_KEY, (p) => mine.push(p.origin.origin));
    hub.subscribe(userKey('local'), (p) => theirs.push(p.origin.origin));
    hub.publish(pic(LOCAL));
    hub.publish(pic(remote('local')));
    expect(mine).toEqual(['local']);
    expect(theirs).toEqual(['remote']);
  });
});
