/**
 * The webhook echoes `validationToken` only on Graph's documented validation request: a POST with the token in the
 * query and no body, while the relay is creating a subscription, for a token of plausible length and characters;
 * answered as text/plain with nosniff. Anything else carrying a validationToken is refused with 400. The real
 * relay and Graph simulator (its handshake must still pass: subscriptions get created).
 */
import t from 'tap'
import { MAX_VALIDATION_TOKEN_LENGTH } from '../../cloud-relay/src/notifications/webhook-routes.js'
import { eventually } from '../helpers/eventually.js'
import { startNotifyHarness, TENANT } from '../notify/fixtures/notify-harness.js'

const h = await startNotifyHarness({ people: 2, pollIntervalMs: 60_000 })
t.teardown(() => h.close())
await h.startRelay()

const GRAPH_TOKEN = 'Validation: Testing client application reachability for subscription Request-Id: 2f4c1e0a-5b7d-4c38-9e21-6d0f3a8b1c57'

async function validate(path: string, token: string | string[], init: { body?: string; contentType?: string } = {}) {
  const query = (Array.isArray(token) ? token : [token]).map((v) => `validationToken=${encodeURIComponent(v)}`).join('&')
  const res = await fetch(`http://127.0.0.1:${h.relay.httpPort}${path}?${query}`, {
    method: 'POST',
    headers: { 'content-type': init.contentType ?? 'text/plain; charset=utf-8' },
    body: init.body ?? '',
  })
  return { status: res.status, type: res.headers.get('content-type'), nosniff: res.headers.get('x-content-type-options'), text: await res.text() }
}

t.test('the simulator\'s handshake (what Graph sends) passes: a subscription is created', async (t) => {
  await h.signIn(h.sync[0]!)
  await eventually(() => h.sim.getSubscriptions().length === 1, 'a subscription at the simulator', 30_000)
  const stats = h.sim.notificationStats()
  t.ok(stats.validations >= 2, 'both URLs were validated')
  t.equal(stats.validationFailures, 0, 'no validation failed')
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 2, 'the relay to count them as subscribed')
})

for (const path of ['/graph/notifications', '/graph/lifecycle']) {
  t.test(`${path}: no echo while no subscription is being created`, async (t) => {
    const r = await validate(path, GRAPH_TOKEN)
    t.equal(r.status, 400)
    t.notMatch(r.text, /Testing client application reachability/, 'the token is not echoed')
    t.match(r.text, /subscription/, 'the answer says why, in words')
  })

  t.test(`${path}: while a create is pending, only the documented request is answered, text/plain with nosniff`, async (t) => {
    const inbox = h.relay.observation.inbox
    if (inbox === undefined) throw new Error('no inbox')
    // The subscription manager does exactly this around its POST /subscriptions.
    inbox.expect('a-pending-client-state', { tenantId: TENANT, clientState: 'a-pending-client-state', onLifecycle: () => undefined })
    t.teardown(() => inbox.forget('a-pending-client-state'))

    const ok = await validate(path, GRAPH_TOKEN)
    t.equal(ok.status, 200)
    t.equal(ok.text, GRAPH_TOKEN, 'the URL-decoded token')
    t.equal(ok.type, 'text/plain; charset=utf-8')
    t.equal(ok.nosniff, 'nosniff')

    for (const [what, token, init] of [
      ['markup in the token', '<script>alert(1)</script>', {}],
      ['a token too long', 'A'.repeat(MAX_VALIDATION_TOKEN_LENGTH + 1), {}],
      ['an empty token', '', {}],
      ['control characters', 'abc\r\nSet-Cookie: x=1', {}],
      ['the token twice', [GRAPH_TOKEN, GRAPH_TOKEN], {}],
      ['a body with the token', GRAPH_TOKEN, { body: '{"value":[]}', contentType: 'application/json' }],
      ['a text body with the token', GRAPH_TOKEN, { body: 'hello' }],
    ] as const) {
      const r = await validate(path, token as string | string[], init)
      t.equal(r.status, 400, what)
      t.notOk(r.text.includes('<script>') || r.text.includes('Set-Cookie'), `${what}: nothing reflected`)
      t.match(r.text, /validationToken|validation/, `${what}: said in words`)
    }
  })
}
