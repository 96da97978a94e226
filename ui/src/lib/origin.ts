// Whose picture or audio level it is. This machine's camera and microphone are their own
// case, not a reserved user id: a participant whose id happens to be "local" is someone
// else, with their own tile and level.

export type Origin = { origin: 'local' } | { origin: 'remote'; user_id: string };

export const LOCAL: Origin = { origin: 'local' };

export const remote = (user_id: string): Origin => ({ origin: 'remote', user_id });

/**
 * The key pictures and levels are filed under: "local" for this machine, "user:" and the
 * user id for a participant. Every participant's key has the prefix, so none can be
 * "local".
 */
export function originKey(o: Origin): string {
  return o.origin === 'local' ? 'local' : `user:${o.user_id}`;
}

export const LOCAL_KEY = originKey(LOCAL);

/** The key of a participant's pictures and level. */
export const userKey = (user_id: string): string => originKey(remote(user_id));
