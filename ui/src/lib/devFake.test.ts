// The dev fake's invite answers have the shell's shape: the app's link and the browser's
// name the same server and the same invitation, so the invite panel shows two forms of one.

import { describe, expect, it, vi } from 'vitest';
import type { Invite } from './types';
import { parseJoinLink } from './links';

// The fake reads `?nodevices` from the page's address when it is made.
vi.stubGlobal('window', { location: { search: '' }, setTimeout: () => 0 });
const { createDevFakeBackend } = await import('./devFake');

function sameInvitation(invite: Invite, key: 'token' | 'invite') {
  const expected = { server: invite.server_url, [key]: invite.token };
  expect(parseJoinLink(invite.link), invite.link).toEqual(expected);
  expect(parseJoinLink(invite.web_link), invite.web_link).toEqual(expected);
  expect(invite.web_link.startsWith(`${invite.server_url}/join#${key}=`), invite.web_link).toBe(true);
  expect(invite.web_link, 'a browser trusts the server itself: no pin').not.toMatch(/fp=/);
  expect(invite.link).toMatch(/&fp=sha256:/);
}

describe('the dev fake invites', () => {
  const backend = createDevFakeBackend();

  it('gives_a_personal_invite_its_browser_link', async () => {
    const invite = await backend.createInvite('viewer', 'Ann Lee', '10.99.0.1');
    expect(invite.server_url).toBe('https://10.99.0.1:7000');
    expect(invite.address).toBe('10.99.0.1');
    sameInvitation(invite, 'token');
  });

  it('gives_a_link_for_anyone_its_browser_link', async () => {
    const invite = await backend.createRoleLink('speaker');
    expect(invite.web_link).toBe('https://192.168.1.20:7000/join#invite=dev-invite-speaker');
    sameInvitation(invite, 'invite');
  });

  it('names_an_ipv6_address_in_brackets_in_both_forms', async () => {
    const invite = await backend.createInvite('speaker', 'G', 'fd00::2');
    expect(invite.server_url).toBe('https://[fd00::2]:7000');
    sameInvitation(invite, 'token');
  });
});

describe('the dev fake stage', () => {
  it('gives those received on stage a reception, and none to me or anyone off stage', async () => {
    const backend = createDevFakeBackend();
    const s = await backend.startEmbedded('Host');
    const byId = Object.fromEntries(s.participants.map((p) => [p.user_id, p]));
    expect(byId['ada']?.reception).toBe('good');
    expect(byId['bo']).not.toHaveProperty('reception');
    expect(byId['me']).not.toHaveProperty('reception');
    expect(s.me).not.toHaveProperty('reception');
  });
});
