// Who may ask plexer authd: the socket-owner lookup in /proc/self/net/tcp{,6}, the secret file, and the gate
// that combines them (no store needed; test/apache/authd.test.ts checks all of it behind a real Apache).
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CallerGate } from '../../src/authd/gate.js';
import { NetlinkOwners, peerUid, ProcOwners, selfTest, uidOf, type PeerOwners } from '../../src/authd/peer.js';
import { readSecretFile, SharedSecret, writeNewSecretFile } from '../../src/authd/secret.js';
import { ConfigError } from '../../src/errors.js';
import type { FastCgiConnection, FastCgiRequest } from '../../src/fastcgi/server.js';
import type { Logger, LogFields } from '../../src/log.js';
import { PLEXER_BIN } from '../helpers/plexer.js';
import { waitFor } from '../helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'plexer-authd-peer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const row = (local: string, remote: string, state: string, uid: number) =>
  `   0: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 12345 1 0000000000000000 20 4 30 10 -1\n`;

function fakeProcNet(tcp: string, tcp6 = header): string {
  const procNet = mkdtempSync(join(dir, 'net-'));
  writeFileSync(join(procNet, 'tcp'), tcp);
  writeFileSync(join(procNet, 'tcp6'), tcp6);
  return procNet;
}

describe('peerUid', () => {
  it('finds the client socket of a live loopback connection (IPv4, IPv6, IPv4-mapped)', async () => {
    for (const [listenHost, connectHost] of [
      ['127.0.0.1', '127.0.0.1'],
      ['::1', '::1'],
      ['::', '127.0.0.1'],
    ] as const) {
      const server = net.createServer();
      await new Promise<void>((r) => server.listen(0, listenHost, r));
      const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
      const client = net.connect({ host: connectHost, port: (server.address() as net.AddressInfo).port });
      const s = await accepted;
      const uid = await peerUid({ address: s.remoteAddress!, port: s.remotePort! }, { address: s.localAddress!, port: s.localPort! });
      expect(uid, `${listenHost} ← ${connectHost} (${s.remoteAddress})`).toBe(process.getuid!());
      // The other direction is our own accepted socket, not the client's: no confusion between the two lines.
      expect(
        await peerUid({ address: s.remoteAddress!, port: s.remotePort! + 1 }, { address: s.localAddress!, port: s.localPort! }),
      ).toBeUndefined();
      client.destroy();
      s.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it('reads the uid column of the matching line and ignores TIME_WAIT entries (they show uid 0)', async () => {
    // 127.0.0.1:40000 → 127.0.0.1:9801 owned by 33; our accepted end (9801 → 40000) owned by 999.
    const procNet = fakeProcNet(
      header +
        row('0100007F:2649', '00000000:0000', '0A', 999) +
        row('0100007F:2649', '0100007F:9C40', '01', 999) +
        row('0100007F:9C40', '0100007F:2649', '01', 33) +
        row('0100007F:9C41', '0100007F:2649', '06', 0),
    );
    const local = { address: '127.0.0.1', port: 9801 };
    expect(await peerUid({ address: '127.0.0.1', port: 40000 }, local, procNet)).toBe(33);
    expect(await peerUid({ address: '::ffff:127.0.0.1', port: 40000 }, { address: '::ffff:127.0.0.1', port: 9801 }, procNet)).toBe(33);
    expect(await peerUid({ address: '127.0.0.1', port: 40001 }, local, procNet)).toBeUndefined();
    expect(await peerUid({ address: '127.0.0.1', port: 40002 }, local, procNet)).toBeUndefined();
    expect(await peerUid({ address: '127.0.0.1', port: 40000 }, local, join(dir, 'missing'))).toBeUndefined();
  });

  it('finds a line that straddles two 64 KiB reads', async () => {
    const filler = Array.from({ length: 600 }, (_, i) =>
      row(`0A000001:${(1000 + i).toString(16).toUpperCase().padStart(4, '0')}`, '0A000002:0050', '01', 1000),
    ).join('');
    const procNet = fakeProcNet(header + filler + row('0100007F:9C40', '0100007F:2649', '01', 33));
    expect(await peerUid({ address: '127.0.0.1', port: 40000 }, { address: '127.0.0.1', port: 9801 }, procNet)).toBe(33);
  });

  it('answers questions asked together, which go to the sock_diag helper in one write, each with its own owner', async () => {
    const netlink = new NetlinkOwners();
    const server = net.createServer();
    const clients: net.Socket[] = [];
    const accepted: net.Socket[] = [];
    try {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      server.on('connection', (s) => accepted.push(s));
      for (let i = 0; i < 20; i++) clients.push(net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }));
      await waitFor(
        () => accepted.length === 20,
        5_000,
        () => `20 connections (${accepted.length})`,
      );
      const ends = (s: net.Socket, shift = 0) =>
        [
          { address: s.remoteAddress!, port: s.remotePort! + shift },
          { address: s.localAddress!, port: s.localPort! },
        ] as const;
      // Interleaved with ones that match no socket: each answer must reach its own question.
      const uids = await Promise.all(accepted.flatMap((s) => [netlink.lookup(...ends(s)), netlink.lookup(...ends(s, 1))]));
      expect(uids.filter((_, i) => i % 2 === 0)).toEqual(Array<number>(20).fill(process.getuid!()));
      // A neighbour's port may be another of these clients; only a socket that exists may answer.
      for (const [i, uid] of uids.entries()) if (i % 2 === 1 && uid !== undefined) expect(uid).toBe(process.getuid!());
    } finally {
      netlink.close();
      for (const c of clients) c.destroy();
      for (const s of accepted) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it('refuses (undefined) a question the helper does not answer in time', async () => {
    // A helper that runs but never answers.
    const mute = join(dir, 'mute-python3');
    writeFileSync(mute, '#!/bin/sh\nexec sleep 30\n');
    chmodSync(mute, 0o755);
    const silent = new NetlinkOwners(mute, 100);
    try {
      const started = performance.now();
      expect(await silent.lookup({ address: '127.0.0.1', port: 40000 }, { address: '127.0.0.1', port: 9801 })).toBeUndefined();
      expect(performance.now() - started).toBeLessThan(1_000);
    } finally {
      silent.close();
    }
  });

  it("finds the same owners through the kernel's sock_diag (python3 helper) as through /proc, other users' included", async () => {
    const netlink = new NetlinkOwners();
    try {
      expect(await selfTest(netlink)).toBe(true);
      expect(await selfTest(new ProcOwners())).toBe(true);
      expect(await selfTest(new NetlinkOwners('/nonexistent/python3'))).toBe(false);
      for (const [listenHost, connectHost] of [
        ['127.0.0.1', '127.0.0.1'],
        ['::1', '::1'],
        ['::', '127.0.0.1'],
        ['::', '::ffff:127.0.0.1'],
      ] as const) {
        const server = net.createServer();
        await new Promise<void>((r) => server.listen(0, listenHost, r));
        const port = (server.address() as net.AddressInfo).port;
        const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
        // A client owned by nobody (65534), as a tenant's process would be.
        const child = spawn(
          process.execPath,
          [
            '-e',
            `const s = require('net').connect({ host: ${JSON.stringify(connectHost)}, port: ${port} }); s.on('error', () => {}); setTimeout(() => {}, 10000)`,
          ],
          { uid: 65534, gid: 65534, env: {}, cwd: '/' },
        );
        const s = await accepted;
        const ends = [
          { address: s.remoteAddress!, port: s.remotePort! },
          { address: s.localAddress!, port: s.localPort! },
        ] as const;
        for (const owners of [netlink, new ProcOwners()] as PeerOwners[]) {
          expect(await owners.lookup(...ends), `${listenHost} ← ${connectHost}`).toBe(65534);
          expect(await owners.lookup({ ...ends[0], port: ends[0].port === 65535 ? 1 : ends[0].port + 1 }, ends[1])).toBeUndefined();
        }
        child.kill('SIGKILL');
        s.destroy();
        await new Promise((r) => server.close(r));
      }
    } finally {
      netlink.close();
    }
  });

  it('resolves --apache-user from /etc/passwd, or refuses with what to do', () => {
    expect(uidOf('root')).toBe(0);
    expect(uidOf('33')).toBe(33);
    expect(() => uidOf('no-such-user-here')).toThrow(ConfigError);
    expect(() => uidOf('no-such-user-here')).toThrow(/the User directive/);
  });
});

describe('the secret file', () => {
  it('is written 0640, never overwritten, and read back', () => {
    const path = join(dir, 'secret.conf');
    writeNewSecretFile(path);
    expect(readFileSync(path, 'utf8')).toMatch(/^Define PLEXER_AUTHD_SECRET [0-9a-f]{64}$/m);
    expect(() => writeNewSecretFile(path)).toThrow(/already exists/);
    const value = /PLEXER_AUTHD_SECRET ([0-9a-f]+)/.exec(readFileSync(path, 'utf8'))![1]!;
    const secret = readSecretFile(path);
    expect(secret.matches(value)).toBe(true);
    expect(secret.matches(value.slice(1))).toBe(false);
    expect(secret.matches(`${value}x`)).toBe(false);
    expect(secret.matches(undefined)).toBe(false);
  });

  it('refuses a file others can read or its group can write, a missing file and a malformed one', () => {
    const path = join(dir, 'loose.conf');
    writeFileSync(path, `Define PLEXER_AUTHD_SECRET ${'a'.repeat(64)}\n`);
    chmodSync(path, 0o644);
    expect(() => readSecretFile(path)).toThrow(/chmod 0640/);
    chmodSync(path, 0o660);
    expect(() => readSecretFile(path)).toThrow(/chmod 0640/);
    chmodSync(path, 0o640);
    expect(readSecretFile(path).matches('a'.repeat(64))).toBe(true);
    expect(() => readSecretFile(join(dir, 'nope.conf'))).toThrow(/plexer authd --new-secret/);
    writeFileSync(path, 'Define PLEXER_AUTHD_SECRET short\n');
    expect(() => readSecretFile(path)).toThrow(ConfigError);
  });

  it('plexer authd refuses to start with --peer-check off and no secret, and with an unreadable secret file', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [PLEXER_BIN, 'authd', '--listen', '127.0.0.1:1', ...args], { env: {} });
        let stderr = '';
        child.stderr.on('data', (d) => (stderr += d));
        child.on('exit', (code) => resolve({ code, stderr }));
      });
    const off = await run(['--peer-check', 'off']);
    expect(off.code).toBe(2);
    expect(off.stderr).toMatch(/--peer-check off needs --secret-file/);
    const missing = await run(['--secret-file', join(dir, 'absent.conf')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*absent\.conf/);
  });
});

describe('CallerGate', () => {
  const lines: string[] = [];
  const emit = (event: string, fields: LogFields = {}) => void lines.push(`${event} ${JSON.stringify(fields)}`);
  const log: Logger = { debug: () => undefined, info: emit, warn: emit, error: emit, scope: () => log };
  const request = (connection: FastCgiConnection | undefined, params: Record<string, string> = {}): FastCgiRequest => ({
    requestId: 1,
    role: 1,
    ...(connection ? { connection } : {}),
    params: new Map(Object.entries(params)),
    signal: new AbortController().signal,
  });

  it('checks the secret before the socket owner, and logs one line per refused connection, rate-limited per reason', async () => {
    let now = 0;
    const procNet = fakeProcNet(
      header + row('0100007F:9C40', '0100007F:2649', '01', 33) + row('0100007F:9C41', '0100007F:2649', '01', 1000),
    );
    const gate = new CallerGate({
      allowedUids: new Set([0, 33]),
      secret: new SharedSecret('s'.repeat(40)),
      log,
      procNet,
      logLimit: 2,
      logWindowMs: 1_000,
      now: () => now,
    });
    const apache = { remoteAddress: '127.0.0.1', remotePort: 40000, localAddress: '127.0.0.1', localPort: 9801 };
    const tenant = { ...apache, remotePort: 40001 };
    expect(await gate.check(request(apache, { PLEXER_AUTHD_SECRET: 's'.repeat(40) }))).toBeUndefined();
    expect(await gate.check(request(apache))).toBe('no-secret');
    expect(await gate.check(request(apache, { PLEXER_AUTHD_SECRET: 'x' }))).toBe('wrong-secret');
    expect(await gate.check(request(tenant, { PLEXER_AUTHD_SECRET: 's'.repeat(40) }))).toBe('peer-uid');
    expect(await gate.check(request(undefined))).toBe('no-connection');
    // apache's connection logged once (its first refusal), then each other connection once.
    expect(lines.filter((l) => l.startsWith('caller refused'))).toHaveLength(3);
    expect(lines.join('\n')).toMatch(/reason":"peer-uid","peer":"127\.0\.0\.1:40001","uid":1000/);
    lines.length = 0;
    now = 10_000;
    // A flood of one reason: two lines per window, the rest counted into the next line.
    for (let i = 0; i < 5; i++) await gate.check(request({ ...apache, remotePort: 50000 + i }));
    expect(lines).toHaveLength(2);
    now = 11_000;
    await gate.check(request({ ...apache, remotePort: 50010 }));
    expect(lines[2]).toMatch(/"not_logged_before":3/);
    expect(gate.refused).toBe(10);
  });

  it('without allowed users (--peer-check off) checks only the secret; a Unix socket skips the owner check', async () => {
    const gate = new CallerGate({ secret: new SharedSecret('t'.repeat(40)), log, procNet: join(dir, 'missing') });
    const anyone = { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2 };
    expect(await gate.check(request(anyone, { PLEXER_AUTHD_SECRET: 't'.repeat(40) }))).toBeUndefined();
    const strict = new CallerGate({ allowedUids: new Set([33]), log, procNet: join(dir, 'missing') });
    expect(await strict.check(request({}))).toBeUndefined();
    expect(await strict.check(request(anyone))).toBe('peer-not-local');
  });
});
