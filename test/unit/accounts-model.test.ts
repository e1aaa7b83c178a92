// The vocabulary of src/accounts/model.ts: the two binding policies and the invariants every binding keeps.
import { describe, expect, it } from 'vitest';
import { accountsWithoutOwnSlot, bindingConflict, ownSlotPerAccount, poolSlots } from '../../src/accounts/model.js';

const APACHE = { user: 'www-data', group: 'www-data' };

describe('ownSlotPerAccount', () => {
  it("binds each enabled account to a slot named after it, running as its own user or Apache's", () => {
    const bindings = ownSlotPerAccount(
      [
        { name: 'alpha', settingsModule: null, enabled: true },
        { name: 'beta', settingsModule: 'tenants.settings_beta', enabled: true, runAs: 'tenant-beta:tenants' },
        { name: 'gamma', settingsModule: null, enabled: false, runAs: 'tenant-gamma' },
      ],
      APACHE,
      '/opt/plexer/apache/example',
    );
    expect(bindings.map((b) => [b.account.name, b.slot])).toEqual([
      ['alpha', { name: 'alpha', user: 'www-data', group: 'www-data', home: '/opt/plexer/apache/example' }],
      ['beta', { name: 'beta', user: 'tenant-beta', group: 'tenants', home: '/opt/plexer/apache/example' }],
    ]);
    expect(bindingConflict(bindings.map((b) => ({ account: b.account.name, slot: b.slot.name })))).toBeNull();
  });

  it('says which accounts a config has no slot for', () => {
    expect(accountsWithoutOwnSlot(['alpha', 'beta', 'delta'], new Set(['alpha', 'beta']))).toEqual(['delta']);
  });
});

describe('poolSlots', () => {
  it('makes slot-1 … slot-N, each with its own user and home, umask 0077', () => {
    expect(poolSlots({ slots: 2, prefix: 'pxa', stateDir: '/var/lib/plexer/apache' })).toEqual([
      { name: 'slot-1', user: 'pxa-s1', group: 'pxa-s1', home: '/var/lib/plexer/apache/slots/slot-1', umask: '0077' },
      { name: 'slot-2', user: 'pxa-s2', group: 'pxa-s2', home: '/var/lib/plexer/apache/slots/slot-2', umask: '0077' },
    ]);
  });
});

describe('bindingConflict', () => {
  it('refuses a slot bound twice and an account in two slots', () => {
    expect(
      bindingConflict([
        { account: 'a', slot: 'slot-1' },
        { account: 'b', slot: 'slot-1' },
      ]),
    ).toBe('slot slot-1 bound twice');
    expect(
      bindingConflict([
        { account: 'a', slot: 'slot-1' },
        { account: 'a', slot: 'slot-2' },
      ]),
    ).toBe('account a in two slots');
  });
});
