// "Invite people": which address the links name. Pure, so every case is a unit test.
//
// The shell lists this machine's addresses (`invite_addresses`); others can reach a LAN
// address, nobody else a loopback one. The host picks one, or types a public address or
// host name (a port forwarded from a router); the shell builds `https://<address>:<port>`
// and checks it again. These rules mirror src-tauri/src/hosting.rs.

import { isRoleLink } from './links';
import type { HostAddress, InviteAddresses, JoinArgs } from './types';

export interface AddressOption {
  /** What goes to `create_invite` as `address`. */
  value: string;
  label: string;
}

export interface AddressChoice {
  /** The addresses to choose from: non-loopback ones, or loopback when that is all. */
  options: AddressOption[];
  /** The one chosen at first: the last used if still there, else the first. */
  selected: string;
  /** The last address used was typed (not an interface address): show it in the field. */
  typed: string;
  /** Nobody else can reach this machine: it has only loopback addresses. */
  localOnly: boolean;
}

function ipText(a: HostAddress): string {
  return a.ip;
}

export function describeAddress(a: HostAddress): string {
  const where = a.loopback ? 'this computer only' : a.interface;
  return `${a.ip} (${where})`;
}

/** The choice offered for the addresses the shell listed. */
export function addressChoice(info: InviteAddresses): AddressChoice {
  const reachable = info.addresses.filter((a) => !a.loopback);
  const shown = reachable.length > 0 ? reachable : info.addresses.filter((a) => a.loopback);
  const options = shown.map((a) => ({ value: ipText(a), label: describeAddress(a) }));
  const last = info.last_address?.trim() || '';
  const listed = options.some((o) => o.value === last);
  // A loopback address, or one this machine no longer has, is not offered as typed.
  const known = info.addresses.some((a) => a.ip === last);
  return {
    options,
    selected: listed ? last : (options[0]?.value ?? ''),
    typed: last && !known ? last : '',
    localOnly: reachable.length === 0,
  };
}

/**
 * What is wrong with a typed address, or null if it can go into a link: an IPv4 or IPv6
 * address (brackets optional), or a host name, optionally with `:port`. `https://` in
 * front is tolerated, other schemes are not.
 */
export function addressProblem(text: string): string | null {
  let rest = text.trim();
  if (!rest) return 'Enter an address or a host name';
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(rest);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'https') return `Leave out ${scheme[1]}:// — links always use https`;
    rest = rest.slice(scheme[0].length).replace(/\/+$/, '');
  }
  let host = rest;
  let port: string | null = null;
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']');
    if (end < 0) return `${rest} is missing its closing ]`;
    host = rest.slice(1, end);
    const after = rest.slice(end + 1);
    if (after) {
      if (!after.startsWith(':')) return `${rest} is not an address`;
      port = after.slice(1);
    }
    if (!isIpv6(host)) return `${host} is not an IPv6 address`;
  } else {
    const colons = rest.split(':').length - 1;
    if (colons === 1) {
      [host, port] = rest.split(':') as [string, string];
    } else if (colons > 1) {
      if (!isIpv6(rest)) return `${rest} is not an IPv6 address`;
      return null;
    }
    if (!isIpv4(host) && !isHostName(host)) return `${host || rest} is not an IP address or a host name`;
  }
  if (port !== null) {
    const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
    if (!(n >= 1 && n <= 65535)) return `${port || '(empty)'} is not a port (1 to 65535)`;
  }
  return null;
}

export function isIpv4(text: string): boolean {
  const parts = text.split('.');
  return (
    parts.length === 4 &&
    parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255 && (p === '0' || !p.startsWith('0')))
  );
}

export function isIpv6(text: string): boolean {
  if (!/^[0-9a-f:.]+$/i.test(text) || !text.includes(':')) return false;
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const all = halves.flatMap(groups);
  // An embedded IPv4 tail (::ffff:1.2.3.4) counts as two groups.
  const last = all[all.length - 1];
  let count = all.length;
  if (last !== undefined && last.includes('.')) {
    if (!isIpv4(last)) return false;
    count += 1;
    all.pop();
  }
  if (!all.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return false;
  return halves.length === 2 ? count < 8 : count === 8;
}

export function isHostName(text: string): boolean {
  const host = text.endsWith('.') ? text.slice(0, -1) : text;
  if (!host || host.length > 253 || /^[\d.]+$/.test(host)) return false;
  return host
    .split('.')
    .every((l) => l.length >= 1 && l.length <= 63 && /^[a-z0-9-]+$/i.test(l) && !l.startsWith('-') && !l.endsWith('-'));
}

/** The `server=` a link will name for `address` (a preview; the shell builds the link). */
export function serverUrlFor(address: string, port: number): string {
  let rest = address.trim().replace(/^https:\/\//i, '').replace(/\/+$/, '');
  let explicit: string | null = null;
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']');
    explicit = rest.slice(end + 1).startsWith(':') ? rest.slice(end + 2) : null;
    rest = rest.slice(1, end);
  } else if (rest.split(':').length === 2) {
    [rest, explicit] = rest.split(':') as [string, string];
  }
  const host = rest.includes(':') ? `[${rest.toLowerCase()}]` : rest.toLowerCase();
  const p = explicit ? Number(explicit) : port;
  return p === 443 ? `https://${host}` : `https://${host}:${p}`;
}

/** The longest name the server takes (docs/API.md: names are 1 to 100 characters). */
export const MAX_NAME_CHARS = 100;


/**
 * What the join form asks the shell for: the invite link, or else the server and token.
 * A personal invitation carries the name the host gave it, so no name is sent (the form
 * says so); a role link needs the guest's `name` (the form asks for it then).
 */
export function joinArgsFrom(form: {
  invite: string;
  server: string;
  token: string;
  name?: string;
}): JoinArgs | { error: string } {
  const invite = form.invite.trim();
  if (invite && isRoleLink(invite)) {
    const name = (form.name ?? '').trim();
    if (!name) return { error: 'Enter your name: this link is for anyone, and others see the name you give' };
    if ([...name].length > MAX_NAME_CHARS) return { error: `Your name may be at most ${MAX_NAME_CHARS} characters` };
    // What the server refuses in names (docs/API.md): said here, in words, before joining.
    if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(name)) {
      return { error: 'Your name may not contain control or formatting characters' };
    }
    return { invite_link: invite, name };
  }
  if (invite) return { invite_link: invite };
  const server = form.server.trim();
  const token = form.token.trim();
  if (server && token) return { server_url: server, token };
  return { error: 'Paste an invite link, or enter a server address and a token' };
}

/**
 * Where a join goes, for "Joining the meeting at …" while it waits: the server's origin
 * (scheme, host, port), never the token. Empty when the arguments name none that parses.
 */
export function joinTarget(args: JoinArgs): string {
  let server: string | null = null;
  if ('server_url' in args) server = args.server_url;
  else {
    const q = args.invite_link.indexOf('?');
    server = q < 0 ? null : new URLSearchParams(args.invite_link.slice(q + 1)).get('server');
  }
  if (!server) return '';
  try {
    const origin = new URL(server).origin;
    return origin === 'null' ? '' : origin;
  } catch {
    return '';
  }
}
