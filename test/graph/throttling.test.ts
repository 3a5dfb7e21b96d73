import { randomUUID } from 'node:crypto'
import t from 'tap'
import { graphError, graphErrorBody, startHarness } from './fixtures/harness.js'

// A low limit keeps the test fast; the default (1500 / 30 s) is the documented one.
const h = await startHarness({ presenceRateLimit: { requests: 5, windowMs: 30_000 } })
t.teardown(() => h.close())

const guids = (n: number): string[] => Array.from({ length: n }, () => randomUUID())

t.test('getPresences chunks at 650 ids per request', async (t) => {
  const big = await startHarness()
  t.teardown(() => big.close())
  const client = big.client()
  for (const [count, requests] of [[650, 1], [651, 2], [1301, 3]] as const) {
    const ids = [big.alice.id, ...guids(count - 1)]
    const before = big.sim.requestCount('getPresencesByUserId')
    const readings = await client.getPresences(ids)
    t.equal(big.sim.requestCount('getPresencesByUserId') - before, requests, `${count} ids → ${requests} requests`)
    t.equal(readings.length, count)
    t.same(new Set(readings.map((r) => r.userId)), new Set(ids))
  }
  const dupes = await client.getPresences([big.bob.id, big.bob.id, big.carol.id])
  t.equal(dupes.length, 2, 'duplicate ids are asked once')
  t.same(await client.getPresences([]), [], 'nothing to ask, no request')
})

t.test('the simulator rejects more than 650 ids, an empty list and non-GUID ids', async (t) => {
  const big = await startHarness()
  t.teardown(() => big.close())
  const token = await big.token()
  const post = (ids: unknown): ReturnType<typeof big.raw> =>
    big.raw('POST', '/v1.0/communications/getPresencesByUserId', { token, body: { ids } })
  t.equal((await post(guids(651))).status, 400)
  t.equal((await post(guids(650))).status, 200)
  t.equal((await post([])).status, 400)
  t.equal((await post(['alice@contoso.example'])).status, 400)
  const unknown = await post([big.alice.id, '0f0f0f0f-0000-4000-8000-000000000000'])
  t.match(unknown.body, {
    value: [
      { id: big.alice.id, availability: 'PresenceUnknown' },
      { id: '0f0f0f0f-0000-4000-8000-000000000000', availability: 'PresenceUnknown', activity: 'PresenceUnknown' },
    ],
  })
  const sdkForm = await big.raw('POST', '/v1.0/communications/microsoft.graph.getPresencesByUserId', {
    token,
    body: { ids: [big.bob.id] },
  })
  t.equal(sdkForm.status, 200)
})

t.test('the limiter: per app per tenant, 429 with Retry-After and the TooManyRequests body', async (t) => {
  const token = await h.token()
  const post = (tok: string): ReturnType<typeof h.raw> =>
    h.raw('POST', '/v1.0/communications/getPresencesByUserId', { token: tok, body: { ids: [h.alice.id] } })
  for (let i = 0; i < 5; i++) t.equal((await post(token)).status, 200, `request ${i + 1} within the limit`)
  const throttled = await post(token)
  t.equal(throttled.status, 429)
  t.equal(throttled.headers.get('retry-after'), '30', 'the whole window, as simulated time stands still')
  t.match(throttled.body, {
    error: {
      code: 'TooManyRequests',
      message: 'Please retry again later.',
      innerError: { code: '429', status: '429', message: 'Please retry after', 'request-id': String, date: String },
    },
  })

  const otherApp = h.sim.addApp()
  t.equal((await post(await h.token(otherApp))).status, 200, 'another app has its own budget')

  h.sim.advance(30_000)
  t.equal((await post(token)).status, 200, 'the window slid')
})

t.test('the client surfaces throttling as GRAPH_THROTTLED with retryAfterMs, without retrying', async (t) => {
  h.sim.advance(30_000)
  const client = h.client()
  for (let i = 0; i < 5; i++) await client.getPresences([h.bob.id])
  const before = h.sim.requestCount('getPresencesByUserId')
  const started = performance.now()
  const err = await graphError(() => client.getPresences([h.bob.id]))
  t.equal(err.code, 'GRAPH_THROTTLED')
  t.equal(err.status, 429)
  t.equal(err.retryAfterMs, 30_000)
  t.equal(h.sim.requestCount('getPresencesByUserId') - before, 1, 'graph-client did not retry behind our back')
  t.ok(performance.now() - started < 1000, 'no retry sleep')
  h.sim.advance(30_000)
})

t.test('fault knobs: 429 with fractional Retry-After, 503, 504 and 500', async (t) => {
  const client = h.client()
  await client.findUser(h.alice.id) // token cached, so the faults hit Graph calls only

  h.sim.faults.throttleNext(1, 2.128)
  const throttled = await graphError(() => client.setPresence(h.alice.id, { availability: 'Available', activity: 'Available' }, 5))
  t.equal(throttled.code, 'GRAPH_THROTTLED')
  t.equal(throttled.retryAfterMs, 2128)

  h.sim.faults.failNext(1, 503, { retryAfterSeconds: 7 })
  const unavailable = await graphError(() => client.clearPresence(h.alice.id))
  t.equal(unavailable.code, 'GRAPH_UNAVAILABLE')
  t.equal(unavailable.status, 503)
  t.equal(unavailable.retryAfterMs, 7000)

  h.sim.faults.failNext(2, 504)
  t.equal((await graphError(() => client.findUser(h.alice.id))).code, 'GRAPH_UNAVAILABLE')
  t.equal((await graphError(() => client.findUser(h.alice.id))).code, 'GRAPH_UNAVAILABLE')
  t.equal((await client.findUser(h.alice.id))?.id, h.alice.id, 'faults are used up')

  h.sim.faults.failNext(1, 500)
  const token = await h.token() // identity requests are not hit by 'graph' faults
  const res = await h.raw('GET', `/v1.0/users/${h.alice.id}`, { token })
  t.equal(res.status, 500)
  t.equal(graphErrorBody(res.body).code, 'UnknownError')
})

t.test('a Graph endpoint that went away is GRAPH_UNAVAILABLE; lifecycle calls are idempotent', async (t) => {
  const gone = await startHarness()
  const port = gone.sim.port
  await Promise.all([gone.sim.start(), gone.sim.start()])
  t.equal(gone.sim.port, port, 'start() on a started simulator changes nothing')
  const client = gone.client()
  await client.findUser(gone.alice.id)
  await Promise.all([gone.sim.stop(), gone.sim.stop()])
  const err = await graphError(() => client.getPresences([gone.alice.id]))
  t.equal(err.code, 'GRAPH_UNAVAILABLE')
  t.throws(() => gone.sim.url, /not started/)
  await client.close()
  await client.close()
  const closed = await graphError(() => client.findUser(gone.alice.id))
  t.equal(closed.code, 'GRAPH_UNAVAILABLE')
  t.match(closed.message, /closed/)
  await gone.close()
})
