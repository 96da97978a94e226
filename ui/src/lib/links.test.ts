import { describe, expect, it } from 'vitest';
import { appLinkFor, inviteInFragment, isRoleLink, pageLinkFor, parseJoinLink } from './links';

const role = 'onstage://join?server=https%3A%2F%2F192.168.1.20%3A7000&invite=eyJ.inv&fp=sha256%3Aab';
const personal = 'onstage://join?server=https%3A%2F%2F192.168.1.20%3A7000&token=eyJ.tok';

describe('invites of a page', () => {
  it('reads_the_fragment', () => {
    expect(inviteInFragment('#token=abc')).toEqual({ token: 'abc' });
    expect(inviteInFragment('#invite=xyz')).toEqual({ invite: 'xyz' });
    expect(inviteInFragment('')).toBeNull();
    expect(inviteInFragment('#token=')).toBeNull();
    expect(pageLinkFor('https://h:8443', { token: 'a.b' })).toBe('https://h:8443/join#token=a.b');
  });

  it('parses_links_of_both_forms', () => {
    expect(parseJoinLink('onstage://join?server=https%3A%2F%2Fh%3A8443&token=t&fp=sha256:aa')).toEqual({ server: 'https://h:8443', token: 't' });
    expect(parseJoinLink(' onstage://join?server=https%3A%2F%2Fh&invite=i ')).toEqual({ server: 'https://h', invite: 'i' });
    expect(parseJoinLink('https://h:8443/join#token=t')).toEqual({ server: 'https://h:8443', token: 't' });
    expect(parseJoinLink('https://h/join/#invite=i')).toEqual({ server: 'https://h', invite: 'i' });
    // A server under a path keeps it, as crates/proto/src/link.rs reads it.
    expect(parseJoinLink('http://h:1/onstage/join#token=t')).toEqual({ server: 'http://h:1/onstage', token: 't' });
  });

  it('writes_the_web_link_as_the_server_does', () => {
    // The same case as crates/proto/src/link.rs web_links_round_trip_and_carry_no_fingerprint.
    const link = pageLinkFor('https://192.168.1.20:8443', { token: 'a.b+c=&d' });
    expect(link).toBe('https://192.168.1.20:8443/join#token=a.b%2Bc%3D%26d');
    expect(parseJoinLink(link)).toEqual({ server: 'https://192.168.1.20:8443', token: 'a.b+c=&d' });
  });

  it('reads_back_the_app_link_it_makes', () => {
    const link = appLinkFor('https://h:8443', { invite: 'a.b' });
    expect(link).toBe('onstage://join?server=https%3A%2F%2Fh%3A8443&invite=a.b');
    expect(parseJoinLink(link)).toEqual({ server: 'https://h:8443', invite: 'a.b' });
  });

  it('refuses_bad_links_with_bad_link', () => {
    for (const bad of ['', 'hello', 'onstage://join?token=t', 'onstage://join?server=ftp%3A%2F%2Fh&token=t', 'https://h/other#token=t', 'https://h/rejoin#token=t', 'https://h/join', 'https://h/join?token=t', 'ftp://h/join#token=t']) {
      const parsed = parseJoinLink(bad);
      expect('code' in parsed && parsed.code, bad).toBe('bad_link');
    }
  });
});

describe('isRoleLink', () => {
  it('tells a link for anyone (invite=) from a personal one (token=)', () => {
    expect(isRoleLink(role)).toBe(true);
    expect(isRoleLink(`  ${role}\n`)).toBe(true);
    expect(isRoleLink(personal)).toBe(false);
    // The browser's form of both.
    expect(isRoleLink('https://192.168.1.20:7000/join#invite=eyJ.inv')).toBe(true);
    expect(isRoleLink('https://192.168.1.20:7000/join#token=eyJ.tok')).toBe(false);
    // Neither, or both (the shell refuses that link), or not a link at all.
    for (const text of ['', 'onstage://join?server=x', `${personal}&invite=i`, 'https://h/?invite=i', 'invite=i']) {
      expect(isRoleLink(text)).toBe(false);
    }
  });
});

