import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { LoadedGatewayConfig } from '../../gateway/src/config/load.js'
import { Stack } from '../../scripts/stack.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { closedPort } from '../helpers/free-port.js'

t.setTimeout(240_000)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const RELEASED = /^released DND on 202: cut off from the relay for \d+ s; the Teams activity that set it can no longer be followed$/

// One stack for both tests (a fresh PGlite costs seconds). Its relay, with the embedded broker, stops and starts
// again on the same port; the gateway is restarted with the grace period each test needs.
const dataDir = await mkdtemp(join(tmpdir(), 'cutoff-'))
const { logger, lines } = captureLogger('info')
// 20 s: the relay (PGlite) restarts within it even on a loaded CI machine (6 s was once too short there).
const overrides: Partial<LoadedGatewayConfig> = { ownedDndGraceS: 20 }
const stack = new Stack({ dataDir, logger, brokerPort: await closedPort(), sync: { pollIntervalMs: 200 }, gatewayOverrides: overrides })
t.teardown(async () => {
  await stack.stop()
  await rm(dataDir, { recursive: true, force: true })
})
const counters = stack.gatewayCounters
const endpoint = (id: string) => stack.gateway?.endpoints().find((e) => e.endpointId === id)
const releaseLines = () => lines().filter((l) => l.msg === 'released DND owned by the gateway while cut off from the relay' && typeof l.reason === 'string' && RELEASED.test(l.reason))

/** Stops the relay; `before` is taken before the link went down, `noticed` after the gateway saw it go. */
async function cutOff(): Promise<{ before: number; noticed: number }> {
  const before = Date.now()
  await stack.stopRelay()
  await eventually(() => stack.gateway?.relayConnected === false, 'the gateway to notice the relay is gone')
  return { before, noticed: Date.now() }
}

t.before(async () => {
  await stack.start()
  await eventually(() => stack.gateway?.links()[0]?.state === 'connected', 'the gateway to connect to the PBX')
  await eventually(() => stack.relay?.engine.graphUserIds('contoso').length === 3, 'all three people mapped')
  // bob's DND: set by the relay for his Teams conference, so owned by the gateway. carol's: set by hand.
  stack.graph.teams('bob@contoso.example').startConference()
  await eventually(() => stack.pbx.getDnd('202'), "DND on bob's extension")
  await eventually(() => endpoint('202')?.dndOwner === 'gateway', "bob's DND owned by the gateway")
  stack.pbx.setDndAtPhone('203', true)
  await eventually(() => endpoint('203')?.dndOwner === 'user', "carol's DND seen as hers")
})

t.test('the link back before the grace ends: nothing is released', async (t) => {
  const graceS = overrides.ownedDndGraceS!
  const cut = await cutOff()
  await stack.startRelay()
  await eventually(() => stack.gateway?.relayConnected, 'the gateway to reconnect')
  const downForMs = Date.now() - cut.before
  t.ok(downForMs < graceS * 1000 - 1000, `the link was back well within the grace (${downForMs} ms)`)

  // Wait past the moment the grace would have ended.
  await sleep(Math.max(0, cut.noticed + graceS * 1000 + 800 - Date.now()))
  t.ok(stack.pbx.getDnd('202'), "bob's DND is still on")
  t.match(endpoint('202'), { dnd: true, dndOwner: 'gateway' }, 'and still ours')
  t.ok(stack.pbx.getDnd('203'), "carol's DND is still on")
  t.equal(counters.get('gateway.cutoff_releases'), 0, 'no release counted')
  t.same(releaseLines(), [], 'no release logged')
})

t.test("cut off from the relay past the grace period: the DND we own is released, the person's is not", async (t) => {
  const graceS = 2
  overrides.ownedDndGraceS = graceS
  await stack.stopGateway('restart')
  await stack.startGateway()
  await eventually(() => stack.gateway?.relayConnected, 'the restarted gateway to connect to the relay')
  // Ownership comes back from the gateway's disk: the restart does not make bob's DND his own.
  await eventually(() => endpoint('202')?.dnd && endpoint('202')?.dndOwner === 'gateway', "bob's DND still owned by the gateway after the restart")
  await eventually(() => endpoint('203')?.dndOwner === 'user', "carol's DND still hers after the restart")

  const cut = await cutOff()
  await sleep(graceS * 1000 - 700)
  t.ok(stack.pbx.getDnd('202'), "before the grace ends bob's DND is still on")
  t.equal(counters.get('gateway.cutoff_releases'), 0, 'nothing released before the grace ends')

  await eventually(() => !stack.pbx.getDnd('202'), "bob's DND to be released at the PBX", 5000)
  const releasedAt = Date.now()
  t.ok(releasedAt - cut.before >= graceS * 1000 - 20, `released after the grace (${releasedAt - cut.before} ms after the relay went down)`)
  t.ok(releasedAt - cut.noticed < graceS * 1000 + 2000, 'and soon after it')
  // The PBX switches DND off before its answer reaches the gateway.
  await eventually(() => counters.get('gateway.cutoff_releases') === 1, 'the release to be confirmed and counted')
  t.ok(stack.pbx.getDnd('203'), "carol's own DND is still on")
  t.match(endpoint('203'), { dnd: true, dndOwner: 'user' }, 'and still hers')
  t.match(endpoint('202'), { dnd: false, dndOwner: null, cause: 'dnd.command' }, "the gateway's view: released by our own command")
  t.equal(counters.get('gateway.cutoff_release_failures'), 0, 'no failure counted')
  const logged = releaseLines()
  t.equal(logged.length, 1, 'one log line for bob, none for carol')
  t.match(logged[0], { level: 40, component: 'cutoff-guard', connector: 'osbiz-main', endpoint: '202' }, 'at warn, with the endpoint in fields')

  // The relay comes back: the snapshot shows bob's DND off, bob is still in the conference, so the relay sets it
  // again. (Had the relay taken our release for the person switching DND off, it would have stood back instead.)
  await stack.startRelay()
  await eventually(() => stack.gateway?.relayConnected, 'the gateway to reconnect', 20_000)
  await eventually(() => stack.pbx.getDnd('202'), "the relay to set bob's DND again")
  await eventually(() => endpoint('202')?.dndOwner === 'gateway', "bob's DND owned by the gateway again")

  // The conference ends: the relay releases it the normal way.
  stack.graph.teams('bob@contoso.example').endActivity()
  await eventually(() => !stack.pbx.getDnd('202'), "bob's DND to be released when the conference ends")
  t.ok(stack.pbx.getDnd('203'), "carol's DND is still on at the end")
  t.equal(counters.get('gateway.cutoff_releases'), 1, 'that was the relay, not another cut-off release')
  // The uplink reports each refused reconnect at error level; anything else would be a fault.
  const errors = lines().filter((l) => l.level >= 50 && !(l.component === 'uplink' && l.code === 'ECONNREFUSED'))
  t.same(errors, [], 'no other error was logged')
})

t.test('a release that fails (PBX link down at that moment) is logged, counted and retried after a backoff', async (t) => {
  const graceS = overrides.ownedDndGraceS!
  const releasesBefore = counters.get('gateway.cutoff_releases')
  stack.graph.teams('bob@contoso.example').startConference()
  await eventually(() => stack.pbx.getDnd('202') && endpoint('202')?.dndOwner === 'gateway', "bob's DND owned by the gateway again")

  const cut = await cutOff()
  // Keep the PBX link down around the moment the grace ends, until the first attempt has failed.
  await sleep(Math.max(0, cut.before + graceS * 1000 - 300 - Date.now()))
  await eventually(() => {
    stack.pbx.dropAllConnections()
    return counters.get('gateway.cutoff_release_failures') > 0
  }, 'the first release to fail', 5000)
  t.ok(stack.pbx.getDnd('202'), "bob's DND is still on after the failed attempt")
  const failure = lines().find((l) => l.msg === 'releasing DND while cut off from the relay failed; will retry')
  t.match(failure, { level: 40, endpoint: '202', code: 'OSBIZ_NOT_CONNECTED' }, 'the failure is logged at warn with its code')

  // The PBX link comes back by itself; the retry (2.5–5 s later) releases the DND.
  await eventually(() => counters.get('gateway.cutoff_releases') === releasesBefore + 1, 'the retry to release the DND', 10_000)
  t.notOk(stack.pbx.getDnd('202'), "bob's DND is off at the PBX")
  t.ok(stack.pbx.getDnd('203'), "carol's DND is still on")
  t.equal(counters.get('gateway.cutoff_release_failures'), 1, 'one failed attempt')

  // Still cut off, with the release's endpoint event queued for the relay: stopping must not wait for its ack.
  const stopped = await Promise.race([stack.stopGateway().then(() => true), sleep(3000).then(() => false)])
  t.ok(stopped, 'the gateway stops within 3 s while cut off')
})
