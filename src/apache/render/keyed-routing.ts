import { UNAVAILABLE } from '../../lookup/resolver.js';
import { refuse } from './refusals.js';
import { USER_NAME_PATTERN } from '../../names.js';
import { ANSWER_MARK } from '../../protocol/rewrite-map.js';

// What PROCESS_GROUP / PLEXER_BACKEND hold until an answer for the authenticated user sets them: a dead map
// (""), an answer to another key, anything unexpected. It can never be an account or slot name (both start with a
// letter) nor a backend, so it always ends in our 503.
export const UNROUTED_SENTINEL = '_unrouted_';

// Guards first: nothing but a well-formed user name is ever sent to a map. A name with "\n" would reach a prg:
// program as two keys, one with "," or "=" could forge the key check below; both are refused before any lookup.
// Set by the first per-directory rule, which runs only for a request that passed authentication and every
// Require: a 401 the application answers itself is then no failed login (logs.ts leaves it uncounted).
export const LOGGED_IN_VARIABLE = 'PLEXER_LOGGED_IN';

export function userNameGuard(): string[] {
  return [
    `        RewriteRule ^ - [E=${LOGGED_IN_VARIABLE}:1]`,
    '        # 0. Only a well-formed user name is looked up (the same pattern the store enforces): our 403.',
    `        RewriteCond %{REMOTE_USER} !${USER_NAME_PATTERN.source}`,
    refuse(403, 'bad-user-name'),
  ];
}

export interface KeyedRoutingOptions {
  map: string; // the RewriteMap name
  key: string; // what is looked up, e.g. %{REMOTE_USER}; never holds "," (names cannot)
  answerVar: string; // env variable that holds the raw answer
  target: string; // env variable set to the value, only from an answer that names `key`
  // An answer of two parts: `target` gets the first, this the second, as `parts` splits them (two capture
  // groups). Default: a route answer "GROUP SETTINGS", split at the first space, settings "" if none (\s in the
  // rules: Apache's config parser would split a literal space).
  restTarget?: string;
  parts?: string;
  prg: boolean; // a prg: program (a shared pipe that can shift) rather than a dbm: file
  conds?: string[]; // conditions for the lookup (full lines)
  noValue?: string[]; // lines for an answer that names `key` but has no value ("alice=")
  indent?: string;
}

// Looks `key` up and sets `target` only from an answer that is "#" + that key + "=" + value: the test string
// "alice,#alice=alpha" must match ^([^,]*),#\1=(.+)$ (src/protocol/rewrite-map.ts says why the mark). For a
// prg: map, any other answer means the shared pipe is behind: a worker died between writing its key and
// reading its answer (or mid-read: even an empty answer can be the bare end of a line), and this lookup read
// what was meant for an earlier one; or the map is dead, and every lookup returns "" at once. The rules then
// ask again, up to DESYNC_RETRIES times: every line written is answered exactly once, so a retry can never wait
// for a line that will not come (mod_rewrite holds a server-wide lock while it waits), and after as many
// retries as answers were lost, the answer to our own key arrives. They also set PLEXER_DESYNC, which the
// watchdog's piped log receives: it reloads Apache gracefully a little later, which gives the maps fresh pipes
// (until then every lookup costs one more line per lost answer). A request still unanswered after the retries,
// or by a dead map, leaves `target` unset and ends in our 503, never in another user's instance.
// dbm: files have no pipe to fall behind; a key missing from the file counts as "known, no value".
export const DESYNC_RETRIES = 3;

export function keyedRouting(o: KeyedRoutingOptions): string[] {
  const i = o.indent ?? '        ';
  const pair = `"${o.key},%{ENV:${o.answerVar}}"`;
  const mark = ANSWER_MARK;
  const ask = `E=${o.answerVar}:\${${o.map}:${o.key}${o.prg ? '' : `|${mark}${o.key}=`}}`;
  const lines = [...(o.conds ?? []), `${i}RewriteRule ^ - [${ask}]`];
  if (o.prg) {
    // The usual case, an answer that names the key, is one test and a skip past the retries. A retry carries the
    // lookup's own conditions: where the lookup was not made (the answer is empty), it must not be made either.
    lines.push(`${i}RewriteCond ${pair} ^([^,]*),${mark}\\1=`, `${i}RewriteRule ^ - [S=${DESYNC_RETRIES}]`);
    for (let retry = 0; retry < DESYNC_RETRIES; retry++) {
      lines.push(...(o.conds ?? []), `${i}RewriteCond ${pair} !^([^,]*),${mark}\\1=`, `${i}RewriteRule ^ - [E=PLEXER_DESYNC:1,${ask}]`);
    }
  }
  if (o.noValue) lines.push(`${i}RewriteCond ${pair} ^([^,]*),${mark}\\1=$`, ...o.noValue);
  if (o.restTarget) {
    lines.push(
      `${i}RewriteCond ${pair} ^([^,]*),${mark}\\1=${o.parts ?? '(\\S+)\\s?(.*)'}$`,
      `${i}RewriteRule ^ - [E=${o.target}:%2,E=${o.restTarget}:%3]`,
    );
  } else {
    lines.push(`${i}RewriteCond ${pair} ^([^,]*),${mark}\\1=(.+)$`, `${i}RewriteRule ^ - [E=${o.target}:%2]`);
  }
  return lines;
}

export function alternation(names: string[]): string {
  // Account and slot names are [a-z0-9_-] only (ACCOUNT_NAME_PATTERN, SLOT_NAME_PATTERN): no regex escaping.
  return `^(${names.join('|')})$`;
}

// A routing variable still holding the sentinel the rules set before asking (no answer that names this key: a
// dead map), or the map's "the store did not say in time": our 503, try again.
export function unanswered(variable: string): string[] {
  return [`        RewriteCond %{ENV:${variable}} ^(${UNROUTED_SENTINEL}|${UNAVAILABLE})$`, refuse(503, 'no-answer')];
}
