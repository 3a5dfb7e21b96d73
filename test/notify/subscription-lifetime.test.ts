import { join } from 'node:path'
import t from 'tap'
import { pino } from 'pino'
import { createScaledClock } from '#kernel/clock.js'
import { openSqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { eventually } from '../helpers/eventually.js'
import { startNotifyHarness, TENANT } from './fixtures/notify-harness.js'

// 600×: a simulated hour is 6 real seconds. Tokens stay on the real clock (msal caches on it).
const clock = createScaledClock(600)
const h = await startNotifyHarness({
  people: 5,
  clock,
  pollIntervalMs: 60_000,
  notifications: { reconcileIntervalMs: 300_000, subscriptionLifetimeMinutes: 55, renewBeforeMinutes: 15 },
})
t.teardown(() => h.close())
await h.startRelay()
await h.signIn(h.sync[0]!)
await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 5, 'a working subscription')

const actions: string[] = []
h.sim.on('subscription', (e) => actions.push(e.action))

t.test('renewal: the same subscription is PATCHed before its 60-minute expiry, again and again', async (t) => {
  const sub = h.sim.getSubscriptions()[0]!
  const firstExpiry = sub.expiresAt
  // Two simulated hours: without renewals the subscription would have expired twice.
  await eventually(() => h.counters.get('subscriptions.renewed') >= 2, 'two renewals', 20_000)
  const now = h.sim.getSubscriptions()
  t.equal(now.length, 1)
  t.equal(now[0]!.id, sub.id, 'never recreated')
  t.ok(now[0]!.expiresAt > firstExpiry, 'expiry moved forward')
  t.notOk(actions.includes('expired'), 'it never expired at Graph')
  t.notOk(actions.includes('created'))
})

t.test('restart: the relay resumes the stored subscription instead of creating one', async (t) => {
  const sub = h.sim.getSubscriptions()[0]!
  // Real time while the relay is down and starting: at 600× a restart on a loaded machine (8 s) outlasted the
  // subscription's remaining 55 simulated minutes, and creating a new one was then right.
  clock.setFactor(1)
  await h.stopRelay()
  actions.length = 0
  await h.startRelay()
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 5, 'the resumed subscription')
  await h.relay.observation.idle()
  clock.setFactor(600)
  t.equal(h.sim.getSubscriptions().length, 1)
  t.equal(h.sim.getSubscriptions()[0]!.id, sub.id, 'the same subscription')
  t.notOk(actions.includes('created'), 'nothing created')
})

t.test('409 on restart: a subscription the store lost is found, deleted and replaced', async (t) => {
  const old = h.sim.getSubscriptions()[0]!
  // Real time again while the relay is down, so Graph still holds the old subscription when it starts.
  clock.setFactor(1)
  await h.stopRelay()
  // The crash window: Graph holds a subscription the relay's store does not know.
  const db = await openSqlClient({ dataDir: join(h.dataDir, 'pglite') }, pino({ level: 'silent' }))
  await db.query('DELETE FROM presence_subscriptions')
  await db.close()
  const conflicts = h.counters.get('subscriptions.conflicts')
  await h.startRelay()
  await eventually(() => h.counters.get('subscriptions.conflicts') === conflicts + 1, 'a 409 handled')
  clock.setFactor(600)
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 5, 'a new subscription')
  const subs = h.sim.getSubscriptions()
  t.equal(subs.length, 1, 'one subscription at Graph')
  t.not(subs[0]!.id, old.id, 'the stale one was deleted')
})

t.test('expiry with no renewal (relay down for over an hour): the relay recreates at start', async (t) => {
  const old = h.sim.getSubscriptions()[0]!
  await h.stopRelay()
  actions.length = 0
  // 70 simulated minutes pass with nobody renewing.
  await eventually(() => h.sim.getSubscriptions().length === 0, 'Graph to expire the subscription', 15_000)
  t.ok(actions.includes('expired'))
  const expired = h.counters.get('subscriptions.expired')
  await h.startRelay()
  await eventually(() => h.sim.getSubscriptions().length === 1, 'a new subscription')
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 5, 'people subscribed again')
  t.not(h.sim.getSubscriptions()[0]!.id, old.id)
  t.equal(h.counters.get('subscriptions.expired'), expired + 1, 'the stored one was seen as expired, not renewed')
  t.ok(h.counters.get('presence.reconcile.requested') > 0, 'the gap was reconciled')
})
