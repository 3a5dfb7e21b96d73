import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Stack } from '../../scripts/stack.js'
import { startMosquitto, type RunningMosquitto } from '../broker/fixtures/mosquitto.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { closedPort } from '../helpers/free-port.js'
import { PbxScript } from './fixtures/pbx-script.js'
import { people } from './fixtures/tunnel-world.js'

const PEOPLE = 20

t.test('on a Mosquitto the relay configured (mTLS, identity as username, ACL, CRL): a broker restart mid-burst loses nothing; a revoked box is cut off', async (t) => {
  t.setTimeout(240_000)
  const dataDir = await mkdtemp(join(tmpdir(), 'tunnel-mosq-'))
  const configDir = join(dataDir, 'mosquitto')
  const port = await closedPort()
  const { logger } = captureLogger('info')
  const stack = new Stack({
    dataDir, logger, people: people(PEOPLE), sync: { pollIntervalMs: 500 },
    // Tests run as root; Mosquitto would otherwise drop to the mosquitto account, which cannot read configDir.
    secure: { mosquitto: { configDir, port, user: 'root' } },
  })
  let mosquitto: RunningMosquitto | undefined
  t.teardown(async () => {
    await stack.stop()
    await mosquitto?.stop()
    await rm(dataDir, { recursive: true, force: true })
  })
  await stack.startSimulators()
  // The relay writes Mosquitto's configuration from its CA, then waits for the broker: start Mosquitto with it.
  const relayStarted = stack.startRelay()
  await eventually(() => existsSync(join(configDir, 'mosquitto.conf')) || undefined, 'the relay to write mosquitto.conf', 30_000)
  mosquitto = await startMosquitto(join(configDir, 'mosquitto.conf'), port)
  await relayStarted
  await stack.startGateway()
  const relay = stack.relay!
  const relayView = () => new Map(stack.people.flatMap((p) => [...(relay.engine.personByEmail('contoso', p.email)?.endpoints.values() ?? [])].map((e) => [e.endpointId, e] as const)))
  await eventually(() => relayView().size === PEOPLE || undefined, 'every extension at the relay through Mosquitto', 30_000)

  const script = new PbxScript(stack.pbx, stack.people.map((p) => p.extension), 5)
  await script.run(100, 1_000)
  await mosquitto.stop()
  await script.run(200, 2_000)
  mosquitto = await startMosquitto(join(configDir, 'mosquitto.conf'), port)
  const expected = script.expected()
  const wrong = () => [...expected].filter(([e, want]) => relayView().get(e)?.state !== want.state || relayView().get(e)?.dnd !== want.dnd).map(([e]) => e)
  await eventually(() => wrong().length === 0 || undefined, 'the relay to hold every final state after the broker restart', 60_000)
  t.same(wrong(), [], 'every endpoint\'s final state is right after the Mosquitto restart')
  const appId = stack.graphClient.clientId
  const wrongAtTeams = () => stack.people.filter((p) => ['busy', 'held'].includes(expected.get(p.extension)!.state) !== (stack.graph.getSession(stack.graph.findUser(p.email)!.id, appId) !== undefined))
  await eventually(() => wrongAtTeams().length === 0 || undefined, 'Teams to show every final state', 60_000)
  t.same(wrongAtTeams().map((p) => p.extension), [], 'every person\'s Teams state is right')

  // Revocation: the relay rewrites the CRL and ACL, and takes over the box's client id to close its connection.
  await eventually(() => stack.gateway?.relayConnected || undefined, 'the box connected again')
  await relay.enrollment.revoke(stack.gatewayId, 'stolen box', 'test')
  await eventually(() => !stack.gateway?.relayConnected || undefined, 'the revoked box to be cut off', 15_000)
  const heardBefore = relayView().get('301')
  stack.pbx.setDndAtPhone('301', !stack.pbx.getDnd('301'))
  await new Promise((resolve) => setTimeout(resolve, 5_000))
  t.notOk(stack.gateway?.relayConnected, 'the revoked box stays out: Mosquitto refuses its certificate after the reload')
  t.same(relayView().get('301')?.dnd, heardBefore?.dnd, 'nothing from the revoked box reaches the sync engine')
  t.match(mosquitto.log(), /Reloading config/, 'Mosquitto reloaded its ACL and CRL')
  t.match(mosquitto.log(), /already connected, closing old connection/, 'the open connection was taken over and closed')
})
