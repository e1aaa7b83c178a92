// The role check behind `plexer authz` (Require external-group) and `plexer authd` (Require plexer-roles): the
// user is enabled and holds one of the roles (store/credentials.ts hasAnyRole); input that is not a user name
// and a list of role names is refused as malformed; any error refuses.
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';
import { isRoleName, isUserName } from '../names.js';
import { failure, refuse, type Outcome } from './outcome.js';

// More roles than any sensible Require line names is refused as malformed.
const MAX_ROLE_LIST = 64;

// The roles to look up, without repeats and sorted (a cache key), or undefined after logging the refusal.
export function rolesToCheck(log: Logger, user: string, roleList: readonly string[]): string[] | undefined {
  if (isUserName(user) && roleList.length > 0 && roleList.length <= MAX_ROLE_LIST && roleList.every(isRoleName)) {
    return [...new Set(roleList)].sort();
  }
  log.warn('role check refused', { reason: 'bad-input', user: isUserName(user) ? user : undefined });
  return undefined;
}

export function noRole(log: Logger, user: string, roles: readonly string[]): Outcome {
  log.info('role check refused', { reason: 'no-role', user, roles: roles.join(' ') });
  return refuse('no-role');
}

export function roleCheckFailed(log: Logger, error: unknown, user: string): Outcome {
  log.error('cannot check roles; refusing', { user, error: coerceError(error).message });
  return failure('store-error');
}
