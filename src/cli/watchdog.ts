import { UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { liveChildren } from '../watchdog/processes.js';
import { createReloadPolicy } from '../watchdog/policy.js';
import { parseCommand, parseWholeNumber } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer watchdog --maps N [--interval-ms MS]

Brings a dead RewriteMap prg: program back without a person: mod_rewrite never restarts a map that exits,
and until Apache reloads every lookup answers "" (the generated rules then give everyone our 503). The
watchdog runs as one of Apache's piped loggers, which Apache itself restarts whenever they die. Every
--interval-ms (default 250) it counts Apache's live children running "plexer map"; when fewer than N are
alive for 500 ms it sends Apache's parent SIGUSR1 (a graceful reload, which starts fresh maps), then waits at
least 3 s, doubling up to 60 s while maps keep dying. It logs to Apache's error log (PLX0902) and exits when
Apache closes the log pipe. The generated config starts it; by hand:
  CustomLog "|/usr/bin/node /opt/plexer/bin/plexer watchdog --maps 2" "-" env=PLEXER_WATCHDOG_NEVER
(the condition is never true: Apache writes it no log lines, so it costs requests nothing).`;

export const command: Command = {
  summary: 'restarts dead RewriteMap programs (run by Apache as a piped logger)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, { maps: { type: 'string' }, 'interval-ms': { type: 'string' } });
    if (values.help) return print(help), 0;
    if (values.maps === undefined) throw new UsageError('--maps N is required: how many prg: maps the Apache config starts');
    const expected = parseWholeNumber(values.maps, '--maps');
    const intervalMs = values['interval-ms'] ? parseWholeNumber(values['interval-ms'], '--interval-ms') : 250;
    const log = createLogger('watchdog');
    const apachePid = process.ppid;
    const script = process.argv[1];
    const isMap = (args: string[]) => args[1] === script && args[2] === 'map';
    const policy = createReloadPolicy({ expected }, Date.now());
    log.info('watching maps', { apache_pid: apachePid, expected });

    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        // Apache gone (we were re-parented): nothing left to watch.
        if (process.ppid !== apachePid) return stop('Apache parent gone');
        const alive = liveChildren(apachePid, isMap).length;
        if (!policy.observe(Date.now(), alive)) return;
        log.warn('map missing: asking Apache for a graceful reload', { log_id: 'PLX0902', alive, expected, apache_pid: apachePid });
        try {
          process.kill(apachePid, 'SIGUSR1');
        } catch (error) {
          log.error('cannot signal Apache', { error: (error as Error).message });
        }
      }, intervalMs);
      const stop = (why: string) => {
        clearInterval(timer);
        log.info('watchdog exiting', { reason: why });
        resolve();
      };
      // Apache writes nothing (the CustomLog condition is never true); EOF means it closed the pipe.
      process.stdin.on('data', () => undefined);
      process.stdin.on('end', () => stop('log pipe closed'));
      process.stdin.on('error', () => stop('log pipe error'));
    });
    return 0;
  },
};
