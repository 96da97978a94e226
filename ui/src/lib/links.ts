// Invite links, both forms, in one place: the app's `onstage://join?server=..&token=..`
// (`invite=` for a role link) and the browser's `https://HOST:PORT/join#token=..`
// (`#invite=..`), as crates/proto/src/link.rs writes and reads them. Pure, no SDK.

import type { BackendError } from './types';

/** The invite a page at /join was opened with: `#token=T` (personal) or `#invite=T` (for anyone). */
export type PageInvite = { token: string } | { invite: string };

export function inviteInFragment(hash: string): PageInvite | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const token = params.get('token')?.trim();
  if (token) return { token };
  const invite = params.get('invite')?.trim();
  if (invite) return { invite };
  return null;
}

/** `token=T` or `invite=T`, encoded: what both forms of link carry after their server. */
function inviteParam(invite: PageInvite): string {
  const [key, value] = 'token' in invite ? ['token', invite.token] : ['invite', invite.invite];
  return `${key}=${encodeURIComponent(value)}`;
}

/** The page's own address for a participant token: a reload comes back as the same participant. */
export function pageLinkFor(origin: string, invite: PageInvite): string {
  return `${origin}/join#${inviteParam(invite)}`;
}

/** The app's link for an invite (what the join form shows and `parseJoinLink` reads). */
export function appLinkFor(server: string, invite: PageInvite): string {
  return `onstage://join?server=${encodeURIComponent(server)}&${inviteParam(invite)}`;
}

/** A link the join form was given, parsed: which server, and the token or the role invite. */
export type ParsedLink = { server: string } & PageInvite;

/**
 * Reads an invite link of either form: the app's `onstage://join?server=..&token=..`
 * (`invite=` for a role link; a certificate pin `fp=` is the browser's business, not the
 * page's) or the browser's `https://HOST:PORT/join#token=..` (`#invite=..`).
 */
export function parseJoinLink(text: string): ParsedLink | BackendError {
  const link = text.trim();
  const bad = (message: string): BackendError => ({ code: 'bad_link', message });
  if (/^onstage:\/\/join\?/i.test(link)) {
    const params = new URLSearchParams(link.slice(link.indexOf('?') + 1).split('#')[0]);
    const server = params.get('server')?.trim();
    if (!server) return bad('the link names no server');
    if (!/^https?:\/\//i.test(server)) return bad(`the link's server ${server} is not an https:// address`);
    const token = params.get('token')?.trim();
    if (token) return { server, token };
    const invite = params.get('invite')?.trim();
    if (invite) return { server, invite };
    return bad('the link carries no token');
  }
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    return bad('it is neither an onstage:// link nor a web address');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return bad(`${url.protocol}// links cannot be joined here`);
  const page = /^(.*)\/join\/?$/.exec(url.pathname);
  if (!page) return bad('a web invite link goes to /join');
  const invite = inviteInFragment(url.hash);
  if (!invite) return bad('the link carries no token');
  return { server: url.origin + page[1], ...invite };
}

/**
 * Whether a pasted link is a role link — one link for anyone, `invite=` instead of
 * `token=`, in either form — whose guests give a name of their own. Anything else (a
 * personal link, a malformed one) is not: the shell's parser says what is wrong with a bad
 * link.
 */
export function isRoleLink(text: string): boolean {
  const link = parseJoinLink(text);
  return !('code' in link) && 'invite' in link;
}
