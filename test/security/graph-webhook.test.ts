/**
 * The Graph webhook faces the internet without a bearer token. Hostile bodies (too big, too many items, not a
 * notification batch, items for subscriptions the relay does not hold) are refused in words before any per-item
 * work, with one log line per request; a large genuine batch is worked through in slices, so /healthz answers
 * meanwhile. The real relay and Graph simulator (notify harness), requests over a real port.
 */
import t from 'tap'
import type { NotificationEvent } from '../../cloud-relay/graph-sim/simulator-types.js'
import { MAX_NOTIFICATIONS_PER_POST, WEBHOOK_BODY_LIMIT } from '../../cloud-relay/src/notifications/webhook-routes.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { observed, startNotifyHarness, TENANT } from '../notify/fixtures/notify-harness.js'

const { logger, lines } = captureLogger('info')
// Polling every 60 s: a change seen within the test came by notification.
// The simulator splits its POSTs at 16 KiB here, so 40 people changing at once take several POSTs.
const SIM_MAX_BATCH_BYTES = 16 * 1024
const h = await startNotifyHarness({ people: 40, pollIntervalMs: 60_000, logger, subscriptionTuning: { maxShardSize: 650 }, sim: { subscriptions: { maxBatchBytes: SIM_MAX_BATCH_BYTES } } })
t.teardown(() => h.close())
await h.startRelay()
await h.signIn(h.sync[0]!)
// A failed create is retried (the harness retries after 1 s); the timeout message carries the relay's last word on it.
await eventually(() => {
  if (h.sim.getSubscriptions().length === 1) return true
  const failed = lines().findLast((l) => l.level >= 40 && /subscription/.test(l.msg))
  if (failed) throw new Error(`${failed.msg}: ${JSON.stringify(failed)}`)
  return false
}, 'a subscription at the simulator', 30_000)
await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 40, 'all 40 people subscribed', 30_000)
await h.relay.observation.idle()

const url = (path: string) => `http://127.0.0.1:${h.relay.httpPort}${path}`

async function post(path: string, body: string, contentType = 'application/json; charset=utf-8') {
  const before = lines().length
  const res = await fetch(url(path), { method: 'POST', headers: { 'content-type': contentType }, body })
  const text = await res.text()
  await h.relay.observation.idle()
  const json = text === '' ? undefined : (JSON.parse(text) as { error?: { code: string; message: string } })
  return { status: res.status, error: json?.error, logLines: lines().slice(before) }
}

const zeros = (bytes: number) => `{"value":[${Array(Math.floor((bytes - 12) / 2)).fill('0').join(',')}]}`

for (const path of ['/graph/notifications', '/graph/lifecycle']) {
  t.test(`${path}: hostile bodies are refused in words, one log line each, and the relay keeps answering`, async (t) => {
    const oversized = await post(path, zeros(2 * WEBHOOK_BODY_LIMIT))
    t.equal(oversized.status, 413, 'a 2 MiB body')
    t.match(oversized.error?.message, /1 MiB/, 'the answer says what the limit is')
    t.equal(oversized.logLines.length, 1, 'one log line')

    const packed = await post(path, zeros(WEBHOOK_BODY_LIMIT - 16))
    t.equal(packed.status, 413, 'a body just under the limit packed with half a million items')
    t.match(packed.error?.message, new RegExp(`at most ${MAX_NOTIFICATIONS_PER_POST}`))
    t.equal(packed.logLines.length, 1, 'one log line')

    const many = JSON.stringify({ value: Array.from({ length: MAX_NOTIFICATIONS_PER_POST + 1 }, (_, i) => ({ subscriptionId: `s${i}`, clientState: 'x' })) })
    const tooMany = await post(path, many)
    t.equal(tooMany.status, 413, `${MAX_NOTIFICATIONS_PER_POST + 1} items`)
    t.equal(tooMany.logLines.length, 1, 'one log line')

    for (const [what, body, type] of [
      ['no value array', '{"foo":1}', undefined],
      ['value is not an array', '{"value":{"subscriptionId":"x"}}', undefined],
      ['an item is not an object', '{"value":[{"subscriptionId":"x","clientState":"y"},0]}', undefined],
      ['an empty batch', '{"value":[]}', undefined],
      ['not JSON', '{"value":[', undefined],
      ['text, not JSON', 'hello', 'text/plain'],
      ['a form', 'value=1', 'application/x-www-form-urlencoded'],
    ] as const) {
      const r = await post(path, body, type)
      t.equal(r.status, 400, what)
      t.match(r.error?.message, /Graph|JSON/, `${what}: said in words`)
      t.ok(r.logLines.length <= 1, `${what}: at most one log line`)
    }

    const unknownBefore = h.counters.get('notify.rejected.unknown-subscription')
    const strangers = JSON.stringify({ value: Array.from({ length: 500 }, (_, i) => ({ subscriptionId: `0f0f0f0f-0000-4000-8000-${String(i).padStart(12, '0')}`, clientState: 'guessed', lifecycleEvent: 'missed', resource: 'communications/presences/x' })) })
    const unknown = await post(path, strangers)
    t.equal(unknown.status, 403, '500 items naming subscriptions the relay does not hold')
    t.match(unknown.error?.message, /subscription/)
    t.equal(unknown.logLines.length, 1, 'one log line for the whole batch')
    t.match(unknown.logLines[0], { rejected: { 'unknown-subscription': 500 } }, 'with the counts')
    t.equal(h.counters.get('notify.rejected.unknown-subscription') - unknownBefore, 500, 'every item counted')

    const health = await fetch(url('/healthz'))
    t.equal(health.status, 200, '/healthz answers')
  })
}

t.test('a large genuine batch is worked through in slices: /healthz answers while it runs, every item arrives', async (t) => {
  const sub = h.sim.getSubscriptions()[0]!
  const validationTokens = h.lastNotification()?.validationTokens ?? (await (async () => {
    // Make Graph send one notification, so its validation tokens are at hand.
    h.sim.teams(h.users[0]!.id).startCall()
    await eventually(() => h.lastNotification() !== undefined && observed(h.relay, h.users[0]!.id) === 'Busy/InACall', 'a notification from the simulator')
    return h.lastNotification()?.validationTokens
  })())
  await h.relay.observation.idle()
  const person = h.users[1]!
  // Exactly what the simulator's delivery would POST (encrypted for the relay's certificate), 600 times.
  const item = (activity: string) => h.sim.changeNotification(sub.id, person.id, { availability: 'Busy', activity })
  const value = Array.from({ length: 599 }, () => item('InACall'))
  value.push(item('InAConferenceCall'))
  const body = JSON.stringify({ value, validationTokens })
  t.ok(body.length < WEBHOOK_BODY_LIMIT, `600 rich items fit the limit (${body.length} bytes)`)
  const accepted = h.counters.get('notify.accepted')
  const res = await fetch(url('/graph/notifications'), { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  t.equal(res.status, 202)
  const health = await fetch(url('/healthz'))
  t.equal(health.status, 200)
  const atHealth = h.counters.get('notify.accepted') - accepted
  t.ok(atHealth < 600, `/healthz answered while the batch was being worked through (${atHealth} of 600 done)`)
  await h.relay.observation.idle()
  t.equal(h.counters.get('notify.accepted') - accepted, 600, 'every item accepted')
  t.equal(observed(h.relay, person.id), 'Busy/InAConferenceCall', 'the last item is the state')
})

t.test('Graph\'s own delivery when all 40 people change at once: POSTs within the simulator\'s limit, every change arrives', async (t) => {
  await h.relay.observation.idle()
  const rejected = h.counters.get('notify.rejected')
  const posts: Array<{ bytes: number; items: number }> = []
  const onNotification = (e: NotificationEvent) => {
    if (e.kind === 'change' && e.outcome === 'delivered') posts.push({ bytes: e.bytes ?? Infinity, items: e.items.length })
  }
  h.sim.on('notification', onNotification)
  t.teardown(() => h.sim.off('notification', onNotification))
  for (const u of h.users) h.sim.teams(u.id).startPresenting()
  await eventually(() => h.users.every((u) => observed(h.relay, u.id) === 'DoNotDisturb/Presenting'), 'every person presenting', 30_000)
  t.equal(h.counters.get('notify.rejected'), rejected, 'nothing Graph sent was refused')
  t.ok(posts.length >= 3, `40 changes took ${posts.length} POSTs`)
  t.ok(posts.every((p) => p.bytes <= SIM_MAX_BATCH_BYTES), `every POST within ${SIM_MAX_BATCH_BYTES} bytes (largest ${Math.max(...posts.map((p) => p.bytes))})`)
  for (const u of h.users) h.sim.teams(u.id).endActivity()
  await eventually(() => h.users.every((u) => observed(h.relay, u.id) === 'Available/Available'), 'every person available again', 30_000)
})
