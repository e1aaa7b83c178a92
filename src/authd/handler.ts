// mod_authnz_fcgi requests → AuthService checks → the status Apache acts on. Checked against Apache 2.4.71
// (test/apache/authd.test.ts), every check arrives on its own connection as one AUTHORIZER request whose PARAMS hold
// the CGI variables plus:
//   FCGI_ROLE=AUTHORIZER
//   FCGI_APACHE_ROLE=AUTHENTICATOR   (AuthBasicProvider <name>, provider type authn): REMOTE_USER and
//                                    REMOTE_PASSWD hold the Basic credentials, REMOTE_ADDR the client.
//   FCGI_APACHE_ROLE=AUTHORIZER      (Require <name>, provider type authz): REMOTE_USER, no password.
//   (absent)                         (provider type authnz, check_password): treated as AUTHENTICATOR.
// mod_authnz_fcgi refuses arguments on the Require line ("doesn't support restrictions on providers"), so the
// roles come from the request environment: `SetEnvIf Request_URI ^ PLEXER_ROLES=admins` in the same
// <Location> (SetEnvIf runs before authorization; SetEnv runs later and is NOT seen).
// Answers: 200 accept; 401 refused login; 403 refused role (Apache turns any non-200 into 401, or 403 with
// AuthzSendForbiddenOnFailure On); 500 store unreachable or overloaded (Apache answers 500: fail closed,
// without prompting the user to retype a password that may be right). The deadline (authn_timeout_ms)
// answers 401, as `plexer authn` refuses when it runs out of time. A caller that is not Apache (gate.ts) is closed
// at connect (another user's socket) or gets 500 to every request (no secret), before anything is looked up or
// recorded: nothing in the answer or its timing depends
// on the user, the password or the roles, and an Apache whose secret does not match fails closed and loudly.
import type { Logger } from '../log.js';
import type { FastCgiHandler, FastCgiRequest, FastCgiResponse } from '../fastcgi/server.js';
import { utf8 } from '../fastcgi/protocol.js';
import type { CallerGate } from './gate.js';
import { failure, type Outcome } from '../auth/outcome.js';
import { withDeadline } from '../deadline.js';
import type { AuthService } from './service.js';

export const ROLES_PARAM = 'PLEXER_ROLES';

export interface HandlerOptions {
  service: AuthService;
  log: Logger;
  deadlineMs: number;
  // Absent only in in-process tests of the checks themselves.
  gate?: CallerGate;
}

// A check still running at the deadline goes on (a bcrypt round cannot be interrupted); it is not waited for.
const pastDeadline = failure('deadline');

const statusFor = (outcome: Outcome, refusedStatus: number): number =>
  outcome.verdict === 'accept' ? 200 : outcome.verdict === 'refuse' ? refusedStatus : outcome.reason === 'deadline' ? 401 : 500;

export function createAuthdHandler({ service, log, deadlineMs, gate }: HandlerOptions): FastCgiHandler {
  return async (request: FastCgiRequest): Promise<FastCgiResponse> => {
    if (gate && (await gate.check(request)) !== undefined) return { status: 500 };
    const { params } = request;
    const apacheRole = params.get('FCGI_APACHE_ROLE');
    const user = utf8(params.get('REMOTE_USER') ?? '');
    const ip = params.get('REMOTE_ADDR');
    const password = params.get('REMOTE_PASSWD');

    if (apacheRole === 'AUTHENTICATOR' || (apacheRole === undefined && password !== undefined)) {
      if (password === undefined || user === '') {
        log.warn('login refused', { reason: 'bad-input', detail: 'no REMOTE_USER or REMOTE_PASSWD', ip });
        return { status: 401 };
      }
      const answer = service.authenticate(user, utf8(password), ip);
      const outcome =
        answer instanceof Promise
          ? await withDeadline(answer, deadlineMs, () => {
              log.error('time limit reached; refusing', { user, limit_ms: deadlineMs, ip });
              return pastDeadline;
            })
          : answer;
      return { status: statusFor(outcome, 401) };
    }

    if (apacheRole === 'AUTHORIZER') {
      const roleText = params.get(ROLES_PARAM);
      if (roleText === undefined) {
        log.error(`role check refused: no ${ROLES_PARAM} in the request; set it with SetEnvIf next to "Require"`, {
          user,
          uri: params.get('REQUEST_URI'),
        });
        return { status: 403 };
      }
      const roles = roleText.split(/[\s,]+/).filter((role) => role !== '');
      const outcome = await withDeadline(service.authorize(user, roles, request.signal), deadlineMs, () => {
        log.error('time limit reached; refusing', { user, limit_ms: deadlineMs });
        return pastDeadline;
      });
      return { status: statusFor(outcome, 403) };
    }

    log.warn('request refused: unknown FCGI_APACHE_ROLE', { role: apacheRole ?? '(none)', ip });
    return { status: 401 };
  };
}
