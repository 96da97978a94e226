import { describe, expect, it } from 'vitest';
import {
  joinTarget,
  addressChoice,
  addressProblem,
  describeAddress,
  isIpv6,
  joinArgsFrom,
  serverUrlFor,
} from './invite';
import type { HostAddress, InviteAddresses } from './types';

const lan: HostAddress = { ip: '192.168.1.20', interface: 'wlan0', loopback: false };
const lab: HostAddress = { ip: '10.99.0.1', interface: 'veth1', loopback: false };
const v6: HostAddress = { ip: 'fd00::2', interface: 'eth0', loopback: false };
const lo: HostAddress = { ip: '127.0.0.1', interface: 'lo', loopback: true };
const lo6: HostAddress = { ip: '::1', interface: 'lo', loopback: true };
const info = (addresses: HostAddress[], last_address?: string): InviteAddresses => ({
  port: 8443,
  addresses,
  ...(last_address ? { last_address } : {}),
});

describe('addressChoice', () => {
  it('offers the LAN addresses, not loopback, the first chosen', () => {
    const c = addressChoice(info([lan, lab, v6, lo, lo6]));
    expect(c.options.map((o) => o.value)).toEqual(['192.168.1.20', '10.99.0.1', 'fd00::2']);
    expect(c.selected).toBe('192.168.1.20');
    expect(c.localOnly).toBe(false);
    expect(c.typed).toBe('');
    expect(c.options[1]!.label).toBe('10.99.0.1 (veth1)');
  });

  it('keeps the last address used while the machine still has it', () => {
    expect(addressChoice(info([lan, lab, lo], '10.99.0.1')).selected).toBe('10.99.0.1');
    // Gone (another network now): the first one, and nothing typed.
    const gone = addressChoice(info([lan, lo], '10.99.0.1'));
    expect(gone.selected).toBe('192.168.1.20');
    expect(gone.typed).toBe('10.99.0.1');
  });

  it('puts a public address used last back in the field', () => {
    const c = addressChoice(info([lan, lo], 'meet.example.com:443'));
    expect(c.typed).toBe('meet.example.com:443');
    expect(c.selected).toBe('192.168.1.20');
  });

  it('says so when only this machine can reach it, and offers loopback then', () => {
    const c = addressChoice(info([lo, lo6]));
    expect(c.localOnly).toBe(true);
    expect(c.options.map((o) => o.value)).toEqual(['127.0.0.1', '::1']);
    expect(c.selected).toBe('127.0.0.1');
    expect(describeAddress(lo)).toBe('127.0.0.1 (this computer only)');
    // A loopback address used last is chosen again, not shown as typed.
    expect(addressChoice(info([lo], '127.0.0.1')).typed).toBe('');
    expect(addressChoice(info([]))).toEqual({ options: [], selected: '', typed: '', localOnly: true });
  });
});

describe('addressProblem', () => {
  it('accepts addresses and host names, with or without a port', () => {
    for (const ok of [
      '10.99.0.1',
      ' 192.168.1.20:9000 ',
      'fd00::1',
      '::1',
      '[fd00::1]',
      '[fd00::1]:443',
      '::ffff:10.0.0.1',
      'meet.example.com',
      'meet.example.com.',
      'host-1:8443',
      'https://meet.example.com:9/',
    ]) {
      expect(addressProblem(ok), ok).toBeNull();
    }
  });

  it('names what is wrong', () => {
    expect(addressProblem('')).toBe('Enter an address or a host name');
    expect(addressProblem('http://h')).toMatch(/links always use https/);
    expect(addressProblem('host:0')).toMatch(/not a port/);
    expect(addressProblem('host:99999')).toMatch(/not a port/);
    expect(addressProblem('host:')).toMatch(/\(empty\) is not a port/);
    expect(addressProblem('host:x')).toMatch(/not a port/);
    expect(addressProblem('[fd00::1')).toMatch(/closing \]/);
    expect(addressProblem('[nothost]:1')).toMatch(/not an IPv6/);
    expect(addressProblem('[fd00::1]x')).toMatch(/not an address/);
    for (const bad of ['bad_name', 'a..b', '-a.b', '300.1.1.1', '01.2.3.4', 'a b', 'user@host', 'fd00::1::2', 'g::1']) {
      expect(addressProblem(bad), bad).not.toBeNull();
    }
  });

  it('knows IPv6 forms', () => {
    expect(isIpv6('1:2:3:4:5:6:7:8')).toBe(true);
    expect(isIpv6('1:2:3:4:5:6:7')).toBe(false);
    expect(isIpv6('1:2:3:4:5:6:7:8:9')).toBe(false);
    expect(isIpv6('1::8')).toBe(true);
    expect(isIpv6('1:2:3:4:5:6:7::8')).toBe(false);
    expect(isIpv6('12345::')).toBe(false);
  });
});

describe('serverUrlFor', () => {
  it('previews the https URL links name', () => {
    expect(serverUrlFor('10.99.0.1', 8443)).toBe('https://10.99.0.1:8443');
    expect(serverUrlFor('fd00::1', 8443)).toBe('https://[fd00::1]:8443');
    expect(serverUrlFor('[fd00::1]:9', 8443)).toBe('https://[fd00::1]:9');
    expect(serverUrlFor('Meet.Example.com:443', 8443)).toBe('https://meet.example.com');
    expect(serverUrlFor('https://h:7/', 8443)).toBe('https://h:7');
  });
});

describe('joinArgsFrom', () => {
  it('sends the link, or else the server and token, and never a name', () => {
    expect(joinArgsFrom({ invite: ' onstage://join?x ', server: 'https://s', token: 't' })).toEqual({
      invite_link: 'onstage://join?x',
    });
    expect(joinArgsFrom({ invite: '', server: ' https://s ', token: ' t ' })).toEqual({
      server_url: 'https://s',
      token: 't',
    });
    for (const form of [
      { invite: '', server: '', token: '' },
      { invite: ' ', server: 'https://s', token: '' },
      { invite: '', server: '', token: 't' },
    ]) {
      expect(joinArgsFrom(form)).toEqual({ error: 'Paste an invite link, or enter a server address and a token' });
    }
    // Whatever was typed as "Your name" (for hosting) is not part of a join.
    const args = joinArgsFrom({ invite: 'onstage://join?x', server: '', token: '' });
    expect('name' in args).toBe(false);
  });
});

const role = 'onstage://join?server=https%3A%2F%2F192.168.1.20%3A7000&invite=eyJ.inv&fp=sha256%3Aab';
const personal = 'onstage://join?server=https%3A%2F%2F192.168.1.20%3A7000&token=eyJ.tok';

describe('joinArgsFrom with a role link', () => {
  it('asks for the guest\'s name and sends it, trimmed', () => {
    expect(joinArgsFrom({ invite: ` ${role} `, server: '', token: '', name: '  Ann  ' })).toEqual({
      invite_link: role,
      name: 'Ann',
    });
    for (const name of [undefined, '', '   ']) {
      expect(joinArgsFrom({ invite: role, server: '', token: '', name })).toEqual({
        error: 'Enter your name: this link is for anyone, and others see the name you give',
      });
    }
    expect(joinArgsFrom({ invite: role, server: '', token: '', name: 'é'.repeat(100) })).toEqual({
      invite_link: role,
      name: 'é'.repeat(100),
    });
    expect(joinArgsFrom({ invite: role, server: '', token: '', name: 'x'.repeat(101) })).toEqual({
      error: 'Your name may be at most 100 characters',
    });
    for (const name of ['a\u202eb', 'tab\there', 'zero\u200bwidth', 'nul\u0000']) {
      expect(joinArgsFrom({ invite: role, server: '', token: '', name })).toEqual({
        error: 'Your name may not contain control or formatting characters',
      });
    }
    // Plain spaces inside and any script's letters are fine.
    expect(joinArgsFrom({ invite: role, server: '', token: '', name: 'Ana María 李' })).toEqual({
      invite_link: role,
      name: 'Ana María 李',
    });
  });

  it('still sends no name with a personal link', () => {
    expect(joinArgsFrom({ invite: personal, server: '', token: '', name: 'Ann' })).toEqual({ invite_link: personal });
  });
});

describe('joinTarget', () => {
  it('names the server a join goes to, never its token', () => {
    expect(joinTarget({ server_url: 'https://meet.example.com:8443/x?token=s', token: 't' })).toBe(
      'https://meet.example.com:8443',
    );
    expect(joinTarget({ invite_link: 'onstage://join?server=https%3A%2F%2F10.0.0.5%3A7800&token=secret' })).toBe(
      'https://10.0.0.5:7800',
    );
    expect(joinTarget({ invite_link: 'onstage://join?invite=x', name: 'G' })).toBe('');
    expect(joinTarget({ server_url: 'meet.example.com', token: 't' })).toBe('');
  });
});
