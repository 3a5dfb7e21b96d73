/**
 * The simulator's JSON batching and presence-write throttling, over HTTPS, against the documented rules
 * (research/graph-presence.md §4), and the relay's writePresenceBatch through the real graph-client.
 */
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { graphErrorBody, startHarness } from '../graph/fixtures/harness.js'

const h = await startHarness({ presenceWriteRateLimit: { requests: 6, windowMs: 30_000 } })
t.teardown(() => h.close())
const token = await h.token()

interface BatchAnswer {
  responses: Array<{ id: string; status: number; headers?: Record<string, string>; body?: unknown }>
}

const setBody = (availability = 'DoNotDisturb', activity = 'Presenting') => ({
  sessionId: h.app.clientId,
  availability,
  activity,
  expirationDuration: 'PT15M',
})
const setItem = (id: string, userId: string, extra: Record<string, unknown> = {}) => ({
  id,
  method: 'POST',
  url: `/users/${userId}/presence/setPresence`,
  headers: { 'Content-Type': 'application/json' },
  body: setBody(),
  ...extra,
})
const batch = (requests: unknown[], tok = token) => h.raw('POST', '/v1.0/$batch', { token: tok, body: { requests } })
const byId = (answer: unknown) => new Map((answer as BatchAnswer).responses.map((r) => [r.id, r]))
const fresh = () => {
  h.sim.advance(31_000) // a fresh write window
  h.sim.faults.clear()
}

t.test('a batch runs each inner request like a direct one and answers 200 with one response per id', async (t) => {
  fresh()
  const before = h.sim.requestStats()
  const answer = await batch([
    setItem('1', h.alice.id),
    setItem('2', h.bob.id, { body: setBody('Busy', 'Busy') }),
    { id: '3', method: 'GET', url: `/users/${h.carol.id}/presence` },
    setItem('4', randomUUID()),
  ])
  t.equal(answer.status, 200, 'outer 200 although inner requests failed')
  const r = byId(answer.body)
  t.equal(r.size, 4)
  t.equal(r.get('1')?.status, 200)
  t.equal(r.get('2')?.status, 400, 'Busy/Busy is not settable, in a batch as alone')
  t.equal(r.get('3')?.status, 200)
  t.match(r.get('3')?.body, { id: h.carol.id, availability: 'PresenceUnknown' })
  t.equal(r.get('4')?.status, 404)
  t.equal(h.sim.getSession(h.alice.id, h.app.clientId)?.activity, 'Presenting', 'the write took effect')
  const after = h.sim.requestStats()
  t.equal(after.graphHttpRequests - before.graphHttpRequests, 1, 'one HTTP request')
  t.equal(after.graphRequests - before.graphRequests, 4, 'four Graph requests as Graph counts them')
  t.equal(after.batches - before.batches, 1)
})

t.test('envelope rules: more than 20, duplicate ids, a body without Content-Type, unknown dependsOn fail the whole batch', async (t) => {
  fresh()
  const users = [h.alice.id, h.bob.id, h.carol.id]
  const many = Array.from({ length: 21 }, (_, i) => setItem(String(i + 1), users[i % 3]!))
  const tooMany = await batch(many)
  t.equal(tooMany.status, 400)
  t.match(String(graphErrorBody(tooMany.body).message), /limit is 20/)
  t.equal((await batch(many.slice(0, 20))).status, 200, 'exactly 20 is fine')
  fresh()
  const dup = await batch([setItem('a', h.alice.id), setItem('A', h.bob.id)])
  t.equal(dup.status, 400, 'ids are unique (case-insensitively)')
  t.equal(h.sim.getSession(h.bob.id, h.app.clientId)?.activity, 'Presenting', 'earlier state')
  const noType = await batch([{ id: '1', method: 'POST', url: `/users/${h.alice.id}/presence/clearPresence`, body: { sessionId: h.app.clientId } }])
  t.equal(noType.status, 400)
  t.match(String(graphErrorBody(noType.body).message), /Content-Type/)
  t.ok(h.sim.getSession(h.alice.id, h.app.clientId), 'nothing ran')
  t.equal((await batch([setItem('1', h.alice.id, { dependsOn: ['9'] })])).status, 400)
  t.equal((await batch([setItem('1', h.alice.id, { dependsOn: ['2'] }), setItem('2', h.bob.id, { dependsOn: ['1'] })])).status, 400, 'a cycle')
  t.equal((await batch([])).status, 400, 'empty')
  t.equal((await batch([{ ...setItem('1', h.alice.id), url: `https://graph.microsoft.com/v1.0/users/${h.alice.id}/presence/setPresence` }])).status, 400, 'absolute url')
})

t.test('dependsOn runs in order; a failed dependency makes its dependants 424', async (t) => {
  fresh()
  const clear = (id: string, userId: string, extra: Record<string, unknown> = {}) => ({
    id,
    method: 'POST',
    url: `/users/${userId}/presence/clearPresence`,
    headers: { 'content-type': 'application/json' },
    body: { sessionId: h.app.clientId },
    ...extra,
  })
  const answer = await batch([
    clear('2', h.carol.id, { dependsOn: ['1'] }),
    setItem('1', h.carol.id),
    setItem('3', h.carol.id, { body: setBody('Busy', 'Busy') }),
    setItem('4', h.alice.id, { dependsOn: ['3'] }),
  ])
  t.equal(answer.status, 200)
  const r = byId(answer.body)
  t.equal(r.get('1')?.status, 200)
  t.equal(r.get('2')?.status, 200, 'the clear ran after the set it depends on (else 404)')
  t.equal(r.get('3')?.status, 400)
  t.equal(r.get('4')?.status, 424)
  t.match(r.get('4')?.body, { error: { code: 'FailedDependency' } })
})

t.test('each inner request is authorised on its own; a bad token fails the envelope', async (t) => {
  fresh()
  const readOnly = h.sim.addApp({ roles: ['User.Read.All'] })
  const readOnlyToken = await h.token(readOnly)
  const answer = await batch([
    { ...setItem('1', h.alice.id), body: { ...setBody(), sessionId: readOnly.clientId } },
    { id: '2', method: 'GET', url: `/users/${h.alice.id}` },
  ], readOnlyToken)
  t.equal(answer.status, 200)
  const r = byId(answer.body)
  t.equal(r.get('1')?.status, 403, 'no Presence.ReadWrite.All: 403 for that item only')
  t.equal(r.get('2')?.status, 200, 'User.Read.All is enough for the user')
  t.equal((await batch([setItem('1', h.alice.id)], 'not-a-token')).status, 401)
})

t.test('presence writes are throttled per app, each inner request counted; inner 429 carries Retry-After', async (t) => {
  fresh()
  h.sim.resetStats()
  // Limit in this file: 6 writes / 30 s.
  const users = [h.alice.id, h.bob.id, h.carol.id]
  const items = Array.from({ length: 8 }, (_, i) => setItem(String(i + 1), users[i % 3]!))
  const answer = await batch(items)
  t.equal(answer.status, 200)
  const statuses = (answer.body as BatchAnswer).responses.map((r) => r.status).sort()
  t.same(statuses, [200, 200, 200, 200, 200, 200, 429, 429], 'six admitted, two throttled')
  const throttled = (answer.body as BatchAnswer).responses.find((r) => r.status === 429)
  t.equal(throttled?.headers?.['retry-after'], '30', 'Retry-After in the inner headers (whole window: time stands still)')
  t.match(throttled?.body, { error: { code: 'TooManyRequests' } })
  const direct = await h.raw('POST', `/v1.0/users/${h.alice.id}/presence/setPresence`, { token, body: setBody() })
  t.equal(direct.status, 429, 'a direct write shares the budget')
  h.sim.advance(10_000)
  const later = await h.raw('POST', `/v1.0/users/${h.alice.id}/presence/setPresence`, { token, body: setBody() })
  t.equal(later.headers.get('retry-after'), '20', 'fractional-capable seconds until a slot frees')
  t.equal(h.sim.requestStats().peak30s.presenceWrites, 10, 'the busiest window counts every write sent, throttled ones too')
  t.ok(h.sim.requestStats().byInnerStatus['429']! >= 2)
})

t.test('the batch-item fault knob throttles inner requests only', async (t) => {
  fresh()
  h.sim.faults.throttleNext(1, 1.5, 'batch-item')
  const answer = await batch([setItem('1', h.alice.id), setItem('2', h.bob.id)])
  t.equal(answer.status, 200, 'the envelope is not hit')
  const r = [...byId(answer.body).values()].map((x) => x.status).sort()
  t.same(r, [200, 429])
  const hit = (answer.body as BatchAnswer).responses.find((x) => x.status === 429)
  t.equal(hit?.headers?.['retry-after'], '1.5')
  const direct = await h.raw('POST', `/v1.0/users/${h.alice.id}/presence/setPresence`, { token, body: setBody() })
  t.equal(direct.status, 200, 'direct requests are not hit by a batch-item fault')
})

t.test('writePresenceBatch through the real graph-client: per-write results in order, 404 clear = absent', async (t) => {
  fresh()
  const client = h.client()
  h.sim.faults.throttleNext(1, 0.25, 'batch-item')
  const results = await client.writePresenceBatch!([
    { kind: 'set', userId: h.alice.id, presence: { availability: 'Busy', activity: 'InACall' }, expirationMinutes: 15 },
    { kind: 'clear', userId: randomUUID() },
    { kind: 'set', userId: h.bob.id, presence: { availability: 'DoNotDisturb', activity: 'Presenting' }, expirationMinutes: 15 },
  ])
  t.equal(results.length, 3)
  t.match(results[0], { ok: false, error: { code: 'GRAPH_THROTTLED', retryAfterMs: 250 } }, 'the first item drew the injected inner 429')
  t.same(results[1], { ok: true, outcome: 'absent' }, 'a 404 on clear means nothing to clear, as for a direct call')
  t.match(results[2], { ok: true, outcome: 'set' })
  await client.clearPresence(h.bob.id)
  const again = await client.writePresenceBatch!([{ kind: 'clear', userId: h.bob.id }])
  t.same(again, [{ ok: true, outcome: 'absent' }], 'no session: absent')
  const tooMany = Array.from({ length: 21 }, () => ({ kind: 'clear' as const, userId: h.bob.id }))
  await t.rejects(client.writePresenceBatch!(tooMany), /Maximum requests limit exceeded/, 'BatchRequestContent enforces 20')
})
