import t from 'tap'
import { GatewayLiveness, type GatewayView } from '../../cloud-relay/src/fleet/gateway-liveness.js'
import type { ResultData } from '../../gateway/protocol/schemas.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { ManualClock } from '../sync/fixtures/world.js'

const MIN = 60_000

t.test('Online → Connected → Offline with reasons and since, pings after a quiet minute', async (t) => {
  const clock = new ManualClock()
  const { logger } = captureLogger()
  const counters = new Counters()
  const pings: Array<{ gatewayId: string; at: number; done: boolean; answer: (ok: boolean) => void }> = []
  const changes: Array<[string, GatewayView['state']]> = []
  const liveness = new GatewayLiveness({ checkIntervalMs: 15_000 }, {
    clock, logger, counters,
    gateways: () => [{ id: 'gw1', tenantId: 't1' }, { id: 'gw2', tenantId: 't2' }],
    ping: (gatewayId) => new Promise<ResultData>((resolve, reject) => {
      const ping = { gatewayId, at: clock.now(), done: false, answer: (ok: boolean) => {
        if (ping.done) return
        ping.done = true
        if (!ok) return reject(new Error(`gateway ${gatewayId} did not answer ping within 10000 ms`))
        liveness.onCommandAnswered(gatewayId, 12)
        resolve({ correlationId: 'x', command: 'cmd.ping', ok: true })
      } }
      pings.push(ping)
    }),
    onChange: (view, previous) => changes.push([`${view.gatewayId}:${previous}`, view.state]),
  })
  liveness.start()
  t.teardown(() => liveness.stop())
  const start = clock.now()

  t.match(liveness.view('gw1'), { state: 'offline', reason: 'never connected', lastSeen: null })
  t.equal(liveness.view('nope'), undefined, 'an unknown gateway has no view')
  t.same(liveness.list('t2').map((v) => v.gatewayId), ['gw2'], 'list filters by tenant')

  clock.advance(1000)
  liveness.onStatus('gw1', { state: 'online', version: '1.2.3', startedAt: 1 })
  liveness.onActivity('gw1')
  t.match(liveness.view('gw1'), { state: 'connected', version: '1.2.3', since: start + 1000 })
  t.match(liveness.view('gw1')?.reason, /no command or ping answered yet/)
  t.equal(pings.length, 0, 'no ping in the first moments after a birth')
  clock.advance(5000)
  t.equal(pings.length, 1, 'a birth is pinged after firstPingDelayMs')
  pings[0]!.answer(true)
  await new Promise((resolve) => setImmediate(resolve))
  t.match(liveness.view('gw1'), { state: 'online', reason: 'events both ways in the last 5 minutes', lastRoundTripMs: 12, since: start + 6000 })

  // Quiet: no ping before a minute without an answer, then one every time it is answered.
  clock.advance(45_000)
  t.equal(pings.length, 1, 'no ping while the last answer is younger than a minute')
  clock.advance(30_000)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(pings.length, 2, 'pinged once nothing was answered for a minute')
  t.ok(pings[1]!.at - start >= 66_000, 'a minute after the last answer')
  pings[1]!.answer(true)
  await new Promise((resolve) => setImmediate(resolve))

  // Traffic from the gateway stops; the pings keep being answered: after 5 minutes it is only Connected.
  const lastSeen = liveness.view('gw1')!.lastSeen!
  for (let i = 0; i < 24; i++) {
    clock.advance(15_000)
    await new Promise((resolve) => setImmediate(resolve))
    for (const ping of pings) ping.answer(true)
  }
  const quiet = liveness.view('gw1')!
  t.equal(quiet.state, 'connected', 'no message from the gateway for more than 5 minutes: connected')
  t.match(quiet.reason, /linked but quiet: no message from the gateway for [5-7] min/)
  t.ok(quiet.since > lastSeen + 5 * MIN - 1 && quiet.since <= lastSeen + 5 * MIN + 15_000, 'since: when the window ran out (to the check interval)')

  liveness.onActivity('gw1')
  t.equal(liveness.view('gw1')!.state, 'online', 'a message brings it back to online')

  // A ping that is not answered: Connected with that reason.
  const before = pings.length
  clock.advance(61_000)
  await new Promise((resolve) => setImmediate(resolve))
  t.ok(pings.length > before)
  pings.at(-1)!.answer(false)
  await new Promise((resolve) => setImmediate(resolve))
  t.match(liveness.view('gw1'), { state: 'connected', reason: /a ping was not answered \(gateway gw1 did not answer ping/ })
  t.equal(counters.get('fleet.pings_unanswered'), 1)

  // The last will: offline with the reason in words.
  clock.advance(1000)
  liveness.onStatus('gw1', { state: 'offline', version: '1.2.3', startedAt: 1, reason: 'connection lost' })
  t.match(liveness.view('gw1'), { state: 'offline', reason: 'last will: the connection to the gateway was lost', since: clock.now() })
  liveness.onStatus('gw1', { state: 'online', version: '1.2.3', startedAt: 2 })
  liveness.onStatus('gw1', { state: 'offline', version: '1.2.3', startedAt: 2, reason: 'shutdown' })
  t.match(liveness.view('gw1'), { state: 'offline', reason: 'the gateway went offline: shutdown' })

  // Revoked: offline whatever else arrives.
  liveness.onStatus('gw2', { state: 'online', version: '1', startedAt: 1 })
  liveness.onActivity('gw2')
  liveness.onRevoked('gw2', 'by admin@example.com at 10:02')
  liveness.onActivity('gw2')
  t.match(liveness.view('gw2'), { state: 'offline', reason: 'revoked: by admin@example.com at 10:02' })
  const pingsBefore = pings.length
  clock.advance(2 * MIN)
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(pings.slice(pingsBefore).some((p) => p.gatewayId === 'gw2'), 'a revoked gateway is not pinged')
  liveness.onReinstated('gw2')
  t.equal(liveness.view('gw2')!.state, 'connected', 'reinstated: back to what its session says')

  t.same(changes.filter(([k]) => k.startsWith('gw1')).map(([k, s]) => `${k}→${s}`).slice(0, 5), [
    'gw1:offline→connected', 'gw1:connected→online', 'gw1:online→connected', 'gw1:connected→online', 'gw1:online→connected',
  ], 'onChange sees every transition')
})
