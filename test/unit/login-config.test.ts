// The form-login section of the rendered config: Secure cookies and the https Origin behind a declared TLS
// proxy, and connection settings that DBDParams cannot carry refused with an actionable message.
import { describe, expect, it } from 'vitest';
import { sessionDatabaseFrom } from '../../src/apache/session-dbd.js';
import { ApacheConfigError, renderApacheConfig, type ApacheConfigOptions } from '../../src/apache/render/index.js';
import { defaultConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { INSTALL } from '../helpers/render-options.js';

const form: ApacheConfigOptions = {
  ...INSTALL,
  accounts: [{ name: 'alpha', settingsModule: 'tenants.settings_alpha', enabled: true }],
  auth: 'form',
  sessionPassphraseFile: '/etc/plexer/session.key',
  formFieldSecret: '0123456789abcdef0123456789abcdef',
  sessionDatabase: { conninfo: 'host=/var/run/postgresql dbname=plexer user=plexer_helper', schema: 'plexer' },
};

describe('form login config', () => {
  it('sets Secure and expects an https Origin only under TLS or a declared TLS proxy', () => {
    const plain = renderApacheConfig(form);
    expect(plain).toContain('SessionDBDCookieName plexer_session path=/;HttpOnly;SameSite=Lax\n');
    expect(plain).toContain("%{HTTP:Origin} != 'http://%{HTTP_HOST}'");
    expect(plain).toContain('ErrorDocument 302 http://%{HTTP_HOST}/app/');
    const proxied = renderApacheConfig({ ...form, tlsProxy: true });
    expect(proxied).toContain('SessionDBDCookieName plexer_session path=/;HttpOnly;SameSite=Lax;Secure\n');
    expect(proxied).toContain("%{HTTP:Origin} != 'https://%{HTTP_HOST}'");
    expect(proxied).toContain('ErrorDocument 302 https://%{HTTP_HOST}/app/');
  });

  it('keeps the cookie store when no session database is given', () => {
    const text = renderApacheConfig({ ...form, sessionDatabase: undefined });
    expect(text).toContain('SessionCookieName plexer_session path=/;HttpOnly;SameSite=Lax\n');
    expect(text).not.toContain('DBDriver');
  });

  it('refuses connection settings that would break out of DBDParams', () => {
    for (const conninfo of ['host=x" \nDBDriver x', 'password=${HOME}', 'password=a\\b']) {
      expect(() => renderApacheConfig({ ...form, sessionDatabase: { conninfo, schema: 'plexer' } }), conninfo).toThrow(ApacheConfigError);
    }
    const config = defaultConfig();
    config.connection = { host: '/var/run/postgresql', database: 'plexer', user: 'plexer_helper', password: 'pass word' };
    expect(() => sessionDatabaseFrom(config)).toThrow(ConfigError);
    expect(() => sessionDatabaseFrom(config)).toThrow(/pg_passfile/);
    config.connection = {
      host: '/var/run/postgresql',
      port: 5432,
      database: 'plexer',
      user: 'plexer_helper',
      passfile: '/etc/plexer/pgpass',
    };
    expect(sessionDatabaseFrom(config).conninfo).toBe(
      'host=/var/run/postgresql port=5432 dbname=plexer user=plexer_helper passfile=/etc/plexer/pgpass application_name=plexer-sessions',
    );
  });
});
