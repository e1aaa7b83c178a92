// Accounts apart from the daemons that serve them, as Passenger keeps an application's group apart from its
// processes (apache/POOL.md, "Accounts and slots"). Three words:
//   Account  what a customer has: a name, a Django settings module, a data directory, its users. The store keeps
//            accounts in the daemon_groups table (src/store/accounts.ts); users.daemon_group names a user's.
//   Slot     one mod_wsgi daemon process group (WSGIDaemonProcess NAME) and the OS user its processes run as.
//   Binding  which slot serves an account: Apache routes a request to the slot of its user's account, and the
//            WSGI script loads the account the binding names.
// Two policies bind them. Without a pool, ownSlotPerAccount: a slot of its own for every enabled account, named
// after it and fixed in the rendered config, so that a new account waits for a reload. With a pool (--slots N),
// poolSlots: slot-1 … slot-N in the config, bound and unbound at run time by `plexer binder` (src/pool/binder.ts),
// which publishes the bindings in a map Apache rereads.
import { parseRunAs, type RunAs } from '../tenant-users.js';
import { poolFiles, slotNames, slotUser } from '../pool/names.js';

export interface Account {
  // ACCOUNT_NAME_PATTERN (src/names.ts): what a map answers for a user, and the name of the account's directory
  // under the data root.
  name: string;
  // Every process serving the account runs with it. null: asked of the settings map (`plexer map settings`) on
  // each request; a pool's binder refuses such an account.
  settingsModule: string | null;
  // false: the account has no slot and its users get our 503 page.
  enabled: boolean;
  // The account's own OS user, "user" or "user:group" (RUN_AS_PATTERN): what its own slot runs as, so that its
  // code reaches no other account's data. Unset or null: Apache's run user, shared. A pool ignores it: there a
  // slot's user is the slot's, and the binder hands it the account's data while bound.
  runAs?: string | null;
}

export interface Slot extends RunAs {
  // The mod_wsgi process group: WSGIDaemonProcess, WSGIProcessGroup and the process title "(wsgi:NAME)". Unique
  // in a config. user and group are never root (validate.ts), and group= is always written: mod_wsgi's default
  // is Apache's Group, which reads plexer.conf.
  name: string;
  // Its processes' working directory.
  home: string;
  // Set for a pool's slots, whose user serves one account after another: what it writes is its own alone.
  umask?: string;
}

// A slot serves at most one account at a time (plexer.wsgi pins the first it loads), and an account is served by
// at most one slot.
export interface Binding {
  account: Account;
  slot: Slot;
}

// A slot of its own named after the account: the routing rules put the map's answer, the account, straight into
// PROCESS_GROUP, and plexer.wsgi reads the account back from mod_wsgi.process_group. Any other naming needs a
// bindings map, as the pool's.
export const ownSlotName = (account: string): string => account;

// The layout without a pool: one slot per enabled account, running as the account's own OS user or as Apache's
// (`apache`), at home in `home`. A disabled account has none.
export function ownSlotPerAccount(accounts: Account[], apache: RunAs, home: string): Binding[] {
  return accounts
    .filter((account) => account.enabled)
    .map((account) => ({
      account,
      slot: { name: ownSlotName(account.name), ...(account.runAs ? parseRunAs(account.runAs) : apache), home },
    }));
}

// A pool's slots: each one's user is PREFIX-sN with its own group, each one's home its directory in the state
// directory, where the binder tells its processes which account they serve.
export function poolSlots(o: { slots: number; prefix: string; stateDir: string }): Slot[] {
  const files = poolFiles(o.stateDir);
  return slotNames(o.slots).map((name) => {
    const user = slotUser(o.prefix, name);
    return { name, user, group: user, home: files.slotHome(name), umask: '0077' };
  });
}

// What breaks the bindings' invariants, or null; by name, as the pool's state holds them.
export function bindingConflict(bindings: Array<{ account: string; slot: string }>): string | null {
  const slots = new Set<string>();
  const accounts = new Set<string>();
  for (const b of bindings) {
    if (slots.has(b.slot)) return `slot ${b.slot} bound twice`;
    if (accounts.has(b.account)) return `account ${b.account} in two slots`;
    slots.add(b.slot);
    accounts.add(b.account);
  }
  return null;
}

// The accounts the slots named in a rendered config do not serve (added since it was rendered): their users get
// our 503 page until it is rendered again.
export const accountsWithoutOwnSlot = (accounts: string[], slots: Set<string>): string[] =>
  accounts.filter((account) => !slots.has(ownSlotName(account)));
