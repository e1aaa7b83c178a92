// What the binder answers Apache (src/pool/bind-request.ts), for each kind of request the bind location can get.
import { describe, expect, it } from 'vitest';
import { bindRequestHandler } from '../../src/pool/bind-request.js';
import type { Binder, BindResult } from '../../src/pool/binder.js';
import { createLogger } from '../../src/log.js';

const page = Buffer.from('<p>plexer-error:503</p>');
function handler(result: BindResult, o: { clientRedirect?: boolean } = {}) {
  const asked: string[] = [];
  const binder = { bind: async (account: string) => (asked.push(account), result) } as unknown as Binder;
  return { asked, handle: bindRequestHandler(binder, page, createLogger('test'), o) };
}
const env = (vars: Record<string, string>) => ({ env: new Map(Object.entries({ CONTENT_LENGTH: '0', REQUEST_METHOD: 'GET', ...vars })) });
const header = (r: { headers: Array<[string, string]> }, name: string) => r.headers.find(([n]) => n === name)?.[1];

describe('the bind location', () => {
  it('refuses a request that did not come from the routing rules (no account from them): 404, nothing bound', async () => {
    const { asked, handle } = handler({ kind: 'bound', slot: 'slot-1' });
    expect((await handle(env({ REQUEST_URI: '/app/x', PLEXER_ACCOUNT: 'alpha' }))).status).toBe(404);
    expect((await handle(env({ REQUEST_URI: '/app/x', REDIRECT_PLEXER_ACCOUNT: 'Bad name' }))).status).toBe(404);
    expect(asked).toEqual([]);
  });

  it('sends a GET on at once (internal redirect) and a POST back as a 307, to the URL the client asked', async () => {
    const { asked, handle } = handler({ kind: 'bound', slot: 'slot-1' });
    const get = await handle(env({ REQUEST_URI: '/app/x?y=1', REDIRECT_PLEXER_ACCOUNT: 'alpha' }));
    expect([get.status, header(get, 'Location')]).toEqual([200, '/app/x?y=1']);
    const post = await handle(env({ REQUEST_URI: '/app/x', REQUEST_METHOD: 'POST', REDIRECT_PLEXER_ACCOUNT: 'alpha' }));
    expect([post.status, header(post, 'Location')]).toEqual([307, '/app/x']);
    expect(asked).toEqual(['alpha', 'alpha']);
  });

  it('with the login page, sends every method back as a 307', async () => {
    const { handle } = handler({ kind: 'bound', slot: 'slot-1' }, { clientRedirect: true });
    expect((await handle(env({ REQUEST_URI: '/app/x', REDIRECT_PLEXER_ACCOUNT: 'alpha' }))).status).toBe(307);
  });

  it('never redirects to another site or with a broken header', async () => {
    const { handle } = handler({ kind: 'bound', slot: 'slot-1' });
    for (const uri of ['//evil.example/app/x', 'app/x', '/app/x y', '/app/\r\nSet-Cookie: a=b', ''])
      expect((await handle(env({ REQUEST_URI: uri, REDIRECT_PLEXER_ACCOUNT: 'alpha' }))).status, uri).toBe(400);
  });

  it('answers busy and refused with our 503 page and Retry-After, and a second trip with Retry-After 1', async () => {
    const busy = await handler({ kind: 'busy' }).handle(env({ REQUEST_URI: '/app/x', REDIRECT_PLEXER_ACCOUNT: 'alpha' }));
    expect([busy.status, header(busy, 'Retry-After'), String(busy.body)]).toEqual([503, '5', String(page)]);
    const refused = await handler({ kind: 'refused', reason: 'account disabled' }).handle(
      env({ REQUEST_URI: '/app/x', REDIRECT_PLEXER_ACCOUNT: 'alpha' }),
    );
    expect([refused.status, header(refused, 'Retry-After')]).toEqual([503, '30']);
    const { asked, handle } = handler({ kind: 'bound', slot: 'slot-1' });
    const again = await handle(
      env({ REQUEST_URI: '/app/x', REDIRECT_PLEXER_ACCOUNT: 'alpha', REDIRECT_REDIRECT_REDIRECT_PLEXER_ACCOUNT: 'alpha' }),
    );
    expect([again.status, header(again, 'Retry-After')]).toEqual([503, '1']);
    expect(asked).toEqual([]);
  });
});
