/**
 * PresenceWriter against the Graph simulator with the real msal-node and graph-client: bursts go as batches of
 * at most 20, superseded writes never reach Graph, throttled writes come back after Retry-After and nothing is
 * lost, and the writer's rate limit keeps the simulator's busiest window within budget.
 */
import t from 'tap'
import { pino } from 'pino'
import { systemClock, type Clock } from '#kernel/clock.js'
import { PresenceWriter, type PresenceWriterOptions, type WriteOutcome } from '../../cloud-relay/src/graph/presence-writer.js'
import type { SettablePresence } from '../../cloud-relay/src/graph/types.js'
import { ManualClock } from '../sync/fixtures/world.js'
import { startHarness, type Harness } from '../graph/fixtures/harness.js'
import { eventually } from '../helpers/eventually.js'
import type { TapTest } from '../helpers/tap-types.js'

const DND: SettablePresence = { availability: 'DoNotDisturb', activity: 'Presenting' }
const IN_CALL: SettablePresence = { availability: 'Busy', activity: 'InACall' }

async function setup(t: TapTest, people: number, simOptions: Parameters<typeof startHarness>[0] = {}) {
  const h = await startHarness(simOptions)
  t.teardown(() => h.close())
  const users = Array.from({ length: people }, (_, i) => h.sim.addUser({ displayName: `P${i}`, userPrincipalName: `p${i}@contoso.example` }).id)
  return { h, users }
}

function writer(h: Harness, options: Partial<PresenceWriterOptions> = {}, clock: Clock = systemClock) {
  const outcomes: WriteOutcome[] = []
  const w = new PresenceWriter(options, { graph: h.client(), clock, logger: pino({ level: 'silent' }), onOutcome: (o) => outcomes.push(o) })
  return { w, outcomes }
}

const sessionOf = (h: Harness, userId: string) => {
  const s = h.sim.getSession(userId, h.app.clientId)
  return s === undefined ? 'none' : `${s.availability}/${s.activity}`
}

t.test('a burst goes out as batches of at most 20; a lone write goes direct', async (t) => {
  const { h, users } = await setup(t, 95)
  const { w, outcomes } = writer(h)
  w.submit(users[0]!, { kind: 'set', presence: DND, expirationMinutes: 15 })
  await w.idle()
  t.equal(h.sim.requestStats().batches, 0, 'one waiting write: a direct request')
  t.equal(sessionOf(h, users[0]!), 'DoNotDisturb/Presenting')
  h.sim.resetStats()
  for (const user of users) w.submit(user, { kind: 'set', presence: IN_CALL, expirationMinutes: 15 })
  await w.idle()
  const stats = h.sim.requestStats()
  t.equal(stats.graphRequests, 95, 'one Graph request per write')
  t.ok(stats.batches >= 4, `batched (${stats.batches} batches for 95 writes)`)
  t.ok(Object.keys(stats.batchSizes).every((size) => Number(size) <= 20), `sizes ${JSON.stringify(stats.batchSizes)}`)
  t.ok(stats.graphHttpRequests < 20, `far fewer HTTP requests (${stats.graphHttpRequests})`)
  t.equal(users.filter((u) => sessionOf(h, u) === 'Busy/InACall').length, 95, 'every write landed')
  t.equal(outcomes.filter((o) => o.result === 'set').length, 96)
  w.stop()
})

t.test('only the latest desired state per person reaches Graph', async (t) => {
  const { h, users } = await setup(t, 40)
  const { w, outcomes } = writer(h)
  const seen = new Map<string, number>()
  h.sim.on('setPresence', (e) => seen.set(e.userId, (seen.get(e.userId) ?? 0) + 1))
  h.sim.on('clearPresence', (e) => seen.set(e.userId, (seen.get(e.userId) ?? 0) + 1))
  // Same turn: ringing → connected → held → retrieved, all superseded by the last.
  for (const user of users) {
    w.submit(user, { kind: 'set', presence: IN_CALL, expirationMinutes: 15 })
    w.submit(user, { kind: 'set', presence: DND, expirationMinutes: 15 })
    w.submit(user, { kind: 'clear' })
    w.submit(user, { kind: 'set', presence: DND, expirationMinutes: 15 })
  }
  await w.idle()
  t.equal([...seen.values()].reduce((a, b) => a + b, 0), 40, 'one write per person')
  t.equal(users.filter((u) => sessionOf(h, u) === 'DoNotDisturb/Presenting').length, 40)
  t.equal(outcomes.filter((o) => o.result === 'superseded').length, 120)
  // Equal to what Graph has from us: not sent again, unless it is a keep-alive.
  seen.clear()
  for (const user of users) w.submit(user, { kind: 'set', presence: DND, expirationMinutes: 15 })
  await w.idle()
  t.equal(seen.size, 0, 'nothing new to say: nothing sent')
  w.submit(users[0]!, { kind: 'set', presence: DND, expirationMinutes: 15 }, { refresh: true })
  await w.idle()
  t.equal(seen.get(users[0]!), 1, 'a refresh is sent')
  // A set still queued and then withdrawn, for someone Graph has nothing of ours: no request at all.
  const fresh = users[1]!
  w.submit(fresh, { kind: 'clear' })
  await w.idle()
  seen.clear()
  w.submit(fresh, { kind: 'set', presence: IN_CALL, expirationMinutes: 15 })
  w.submit(fresh, { kind: 'clear' })
  await w.idle()
  t.equal(seen.size, 0, 'set then clear before sending: Graph never hears of it')
  w.stop()
})

t.test('inner 429s: the tenant pauses for Retry-After, exactly the throttled writes are retried, nothing is lost', async (t) => {
  const { h, users } = await setup(t, 40)
  const { w } = writer(h)
  const attempts = new Map<string, number[]>()
  h.sim.on('request', (e) => {
    if (e.operation !== 'setPresence') return
    const user = e.path.split('/')[3] ?? ''
    attempts.set(user, [...(attempts.get(user) ?? []), e.status])
  })
  h.sim.faults.throttleNext(5, 0.3, 'batch-item')
  for (const user of users) w.submit(user, { kind: 'set', presence: DND, expirationMinutes: 15 })
  await eventually(() => users.every((u) => sessionOf(h, u) === 'DoNotDisturb/Presenting'), 'every write to land')
  await w.idle()
  t.equal(w.stats.throttled, 5)
  t.equal([...attempts.values()].filter((s) => s[0] === 429).length, 5, 'five writes were throttled')
  t.ok([...attempts.values()].every((s) => s.at(-1) === 200 && s.length <= 2), 'each throttled write retried once; the others sent once')
  t.equal([...attempts.values()].flat().length, 45, '40 writes + 5 retries')
  w.stop()
})

t.test('the retry waits at least Retry-After; an outer 429 requeues the whole batch', async (t) => {
  const { h, users } = await setup(t, 30)
  // One request at a time, so "after the 429" is well defined: the writer had the answer before sending more.
  const { w } = writer(h, { maxConcurrentRequests: 1 })
  const events: Array<{ status: number; at: number; batch: boolean }> = []
  h.sim.on('request', (e) => {
    if (e.operation === 'setPresence' || e.operation === 'batch') events.push({ status: e.status, at: e.at, batch: e.operation === 'batch' })
  })
  h.sim.faults.throttleNext(1, 0.25, 'graph')
  for (const user of users) w.submit(user, { kind: 'set', presence: IN_CALL, expirationMinutes: 15 })
  await eventually(() => users.every((u) => sessionOf(h, u) === 'Busy/InACall'), 'every write to land')
  const throttled = events.find((e) => e.status === 429)
  t.ok(throttled?.batch, 'the first batch was throttled as a whole')
  t.equal(events.filter((e) => !e.batch).length, 30, 'its writes were all sent again, none lost, none twice')
  const after = events.filter((e) => throttled !== undefined && e.at > throttled.at)
  t.ok(after.length > 0)
  t.ok(after.every((e) => throttled !== undefined && e.at - throttled.at >= 250), 'nothing sent before Retry-After had passed')
  t.equal(w.stats.throttled >= 1, true)
  w.stop()
})

t.test('5xx backs off and retries; other failures are reported per write; a 404 clear is "absent"', async (t) => {
  const { h, users } = await setup(t, 3)
  const { w, outcomes } = writer(h, { retryBaseMs: 50 })
  h.sim.faults.failNext(1, 503, { target: 'graph' })
  w.submit(users[0]!, { kind: 'set', presence: DND, expirationMinutes: 15 })
  await eventually(() => sessionOf(h, users[0]!) === 'DoNotDisturb/Presenting', 'the write after the 503')
  await w.idle()
  t.match(outcomes.at(-1), { userId: users[0], result: 'set' })
  w.submit(users[1]!, { kind: 'clear' })
  await w.idle()
  t.match(outcomes.at(-1), { userId: users[1], result: 'absent' })
  w.submit('0f0f0f0f-0000-4000-8000-000000000000', { kind: 'set', presence: DND, expirationMinutes: 15 })
  await w.idle()
  t.match(outcomes.at(-1), { result: 'failed', error: { code: 'GRAPH_REQUEST', status: 404 } }, 'an unknown user: reported, not retried')
  w.stop()
})

t.test('the rate limit holds: no more writes in a window than configured, the rest wait for the window', async (t) => {
  // The simulator would allow 40; the writer is set to 25 per 30 s. Both clocks are moved by hand.
  const clock = new ManualClock()
  const { h, users } = await setup(t, 60, { presenceWriteRateLimit: { requests: 40, windowMs: 30_000 } })
  const { w } = writer(h, { rateLimit: { requests: 25, windowMs: 30_000 } }, clock)
  for (const user of users) w.submit(user, { kind: 'set', presence: DND, expirationMinutes: 15 })
  await w.idle()
  t.equal(h.sim.requestStats().graphRequests, 25, 'the first window: 25')
  t.equal(w.backlog, 35, 'the rest wait')
  clock.advance(30_000)
  h.sim.advance(30_000)
  await w.idle()
  t.equal(h.sim.requestStats().graphRequests, 50)
  clock.advance(30_000)
  h.sim.advance(30_000)
  await w.idle()
  const stats = h.sim.requestStats()
  t.equal(stats.graphRequests, 60, 'all sent')
  t.equal(stats.peak30s.presenceWrites, 25, 'the busiest 30 s window at Graph held 25')
  t.equal(stats.byInnerStatus['429'] ?? 0, 0, 'never throttled')
  t.equal(users.filter((u) => sessionOf(h, u) === 'DoNotDisturb/Presenting').length, 60)
  w.stop()
})
