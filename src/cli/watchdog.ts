import { readFileSync } from 'node:fs';
import { coerceError, UsageError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { createLogger } from '../log.js';
import { createReloadPolicy, type ReloadState } from '../watchdog/policy.js';
import { liveChildren } from '../watchdog/processes.js';
import { createStuckMapDetector } from '../watchdog/stuck-maps.js';
import { parseCommand, parseWholeNumber } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer watchdog --maps N [--state-file FILE] [--interval-ms MS]

Keeps Apache's RewriteMap prg: programs answering, with no person acting. mod_rewrite never restarts a map that
exits (every lookup then answers "" and the generated rules give everyone our 503), and a map that hangs keeps
the worker waiting on it — and with it mod_rewrite's server-wide lock — forever. The watchdog runs as one of
Apache's piped loggers, which Apache itself starts as root and restarts whenever they die. Every --interval-ms
(default 250) it looks at Apache's children in /proc:
  - a map that kept a worker waiting for 2 s without writing a byte is killed (PLX0903): the worker reads
    end-of-file and its request gets our 503;
  - when fewer than N "plexer map" children are alive for 500 ms, Apache's parent gets SIGUSR1, a graceful
    reload that starts fresh maps (PLX0902);
  - each line Apache writes to it reports a request that found a map's pipe behind (a worker died mid-lookup;
    the rules still route correctly, at one more line per lost answer; PLX0905): 10 s later it reloads too
    (PLX0904).
After a reload it waits at least 1 s before the next, doubling up to 60 s while reloads keep being needed; that
state is kept in --state-file, since every reload restarts the watchdog. It logs to Apache's error log and exits
when Apache closes the log pipe. The generated config starts it:
  CustomLog "|/usr/bin/node /opt/plexer/bin/plexer watchdog --maps 2 --state-file /run/plexer/watchdog.state" "desync %u" env=PLEXER_DESYNC`;

function loadState(file: string | undefined): ReloadState | undefined {
  if (file === undefined) return undefined;
  try {
    const state = JSON.parse(readFileSync(file, 'utf8')) as ReloadState;
    return [state.nextReloadAt, state.backoffMs, state.lastReloadAt].every(Number.isFinite) ? state : undefined;
  } catch {
    return undefined;
  }
}

export const command: Command = {
  summary: 'restarts dead or hung RewriteMap programs (run by Apache as a piped logger)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, {
      maps: { type: 'string' },
      'state-file': { type: 'string' },
      'interval-ms': { type: 'string' },
    });
    if (values.help) return (print(help), 0);
    if (values.maps === undefined) throw new UsageError('--maps N is required: how many prg: maps the Apache config starts');
    const expected = parseWholeNumber(values.maps, '--maps');
    const intervalMs = values['interval-ms'] ? parseWholeNumber(values['interval-ms'], '--interval-ms') : 250;
    const stateFile = values['state-file'];
    const log = createLogger('watchdog');
    const apachePid = process.ppid;
    const script = process.argv[1];
    const policy = createReloadPolicy({ expected }, Date.now(), loadState(stateFile));
    const stuck = createStuckMapDetector();
    log.info('watching maps', { apache_pid: apachePid, expected });

    const reload = (why: string, fields: Record<string, string | number>) => {
      log.warn(why, { ...fields, apache_pid: apachePid });
      if (stateFile !== undefined) {
        try {
          writeFileAtomic(stateFile, JSON.stringify(policy.state()) + '\n', { mode: 0o600 });
        } catch (error) {
          log.warn('cannot save the watchdog state', { file: stateFile, error: coerceError(error).message });
        }
      }
      try {
        process.kill(apachePid, 'SIGUSR1');
      } catch (error) {
        log.error('cannot signal Apache', { error: coerceError(error).message });
      }
    };

    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        // Apache gone (we were re-parented): nothing left to watch.
        if (process.ppid !== apachePid) return stop('Apache parent gone');
        const children = liveChildren(apachePid, () => true);
        const maps = liveChildren(apachePid, (args) => args[1] === script && args[2] === 'map');
        const now = Date.now();
        for (const map of stuck.check(
          now,
          maps,
          children.filter((pid) => !maps.includes(pid)),
        )) {
          log.warn('map kept a worker waiting without answering: killing it', { log_id: 'PLX0903', map_pid: map });
          try {
            process.kill(map, 'SIGKILL');
          } catch {
            // gone already
          }
        }
        const alive = maps.length;
        if (!policy.observe(now, alive)) return;
        if (alive < expected) reload('map missing: asking Apache for a graceful reload', { log_id: 'PLX0902', alive, expected });
        else reload("a map's pipe fell behind: asking Apache for a graceful reload", { log_id: 'PLX0904' });
      }, intervalMs);
      const stop = (why: string) => {
        clearInterval(timer);
        log.info('watchdog exiting', { reason: why });
        resolve();
      };
      // Each line is one request that found a map's pipe behind ("desync USER").
      let lastReportLogged = 0;
      process.stdin.on('data', (chunk: Buffer) => {
        const now = Date.now();
        policy.desync(now);
        // One line a second at most: a pipe that stays behind reports every request until the reload.
        if (now - lastReportLogged < 1_000) return;
        lastReportLogged = now;
        const user = /^desync (\S{1,128})/.exec(chunk.toString('latin1'))?.[1];
        log.warn("a request found a map's pipe behind (a worker died mid-lookup); routed by asking again", { log_id: 'PLX0905', user });
      });
      process.stdin.on('end', () => stop('log pipe closed'));
      process.stdin.on('error', () => stop('log pipe error'));
    });
    return 0;
  },
};
