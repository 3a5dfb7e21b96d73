import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { Stack } from '../../scripts/stack.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { createPostgresSchema } from '../helpers/postgres.js'

const MOSQUITTO_SERVICE = process.env.TEST_MQTT_URL ?? 'mqtt://127.0.0.1:1883'

const variants = [
  { store: 'pglite', broker: 'embedded' },
  { store: 'postgres', broker: 'mosquitto' },
  { store: 'pglite', broker: 'mosquitto' },
  { store: 'postgres', broker: 'embedded' },
] as const

for (const variant of variants) {
  t.test(`end to end: store on ${variant.store}, broker ${variant.broker}`, async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'e2e-'))
    const pg = variant.store === 'postgres' ? await createPostgresSchema() : undefined
    const { logger, lines } = captureLogger('info')
    const stack = new Stack({
      dataDir,
      logger,
      databaseUrl: pg?.url,
      // The Mosquitto service is shared: a unique gateway id keeps this run's retained messages apart.
      gatewayId: `gw-${randomBytes(4).toString('hex')}`,
      broker: variant.broker === 'mosquitto' ? { url: MOSQUITTO_SERVICE } : 'embedded',
      sync: { pollIntervalMs: 200 },
    })
    t.teardown(async () => {
      await stack.stop()
      await pg?.drop()
      await rm(dataDir, { recursive: true, force: true })
    })
    await stack.start()
    const graph = stack.graph
    const pbx = stack.pbx
    const appId = stack.graphClient.clientId
    const [alice, bob, carol] = ['alice@contoso.example', 'bob@contoso.example', 'carol@contoso.example'].map((upn) => graph.findUser(upn)!)

    await eventually(() => stack.gateway?.links()[0]?.state === 'connected', 'the gateway to connect to the PBX')
    await eventually(() => stack.relay?.engine.graphUserIds('contoso').length === 3, 'all three people mapped to Microsoft 365 users')

    // 1. alice takes a PBX call: Teams shows DoNotDisturb/Presenting through our app session; hanging up clears it.
    const call = pbx.incomingCall('201')
    pbx.answer(call)
    const session = await eventually(() => graph.getSession(alice!.id, appId), "alice's app session")
    t.match(session, { availability: 'DoNotDisturb', activity: 'Presenting' }, 'our session is DoNotDisturb/Presenting')
    t.match(graph.getPresence(alice!.id), { availability: 'DoNotDisturb', activity: 'Presenting' }, 'alice shows DND in Teams')
    await new Promise((resolve) => setTimeout(resolve, 600))
    t.notOk(pbx.getDnd('201'), "our own session is not mistaken for a Teams call: no DND on alice's extension")
    pbx.hangup(call)
    await eventually(() => graph.getSession(alice!.id, appId) === undefined, "alice's session to be cleared")
    t.not(graph.getPresence(alice!.id).availability, 'DoNotDisturb', 'alice no longer shows DND')

    // 2. bob joins a Teams conference: DND on his extension, owned by the gateway; leaving clears it.
    graph.teams(bob!.id).startConference()
    await eventually(() => pbx.getDnd('202'), "DND on bob's extension")
    const bobEndpoint = await eventually(() => stack.gateway?.endpoints().find((e) => e.endpointId === '202' && e.dnd), "the gateway's view of bob")
    t.equal(bobEndpoint.dndOwner, 'gateway', "bob's DND is owned by the gateway")
    t.equal(graph.getSession(bob!.id, appId), undefined, 'PBX DND set by us does not produce a Teams session (no loop)')
    graph.teams(bob!.id).endActivity()
    await eventually(() => !pbx.getDnd('202'), "bob's DND to be released")

    // 3. carol's own DND on the phone is never cleared by us, not even when a Teams call ends.
    pbx.setDndAtPhone('203', true)
    await eventually(() => stack.gateway?.endpoints().find((e) => e.endpointId === '203' && e.dnd && e.dndOwner === 'user'), "carol's manual DND seen as hers")
    graph.teams(carol!.id).startCall()
    await eventually(async () => (await stack.relay!.store.listEvents({ personId: stack.relay!.engine.personByEmail('contoso', carol!.userPrincipalName)!.row.id })).some((e) => e.kind === 'teams.trigger.on'), "the relay noticing carol's Teams call")
    graph.teams(carol!.id).endActivity()
    await eventually(async () => (await stack.relay!.store.listEvents({ personId: stack.relay!.engine.personByEmail('contoso', carol!.userPrincipalName)!.row.id })).some((e) => e.kind === 'teams.trigger.off'), "the relay noticing carol's Teams call ended")
    await new Promise((resolve) => setTimeout(resolve, 500))
    t.ok(pbx.getDnd('203'), "carol's DND is still on")
    t.equal(stack.gateway?.endpoints().find((e) => e.endpointId === '203')?.dndOwner, 'user')

    // The admin's answer to "why": the event log says what happened, in words.
    const aliceId = stack.relay!.engine.personByEmail('contoso', 'alice@contoso.example')!.row.id
    const aliceLog = (await stack.relay!.store.listEvents({ personId: aliceId })).map((e) => e.message)
    t.ok(aliceLog.some((m) => /Teams DoNotDisturb\/Presenting set for Alice Adams .* because extension 201 .* is busy/.test(m)), 'the log says why alice was set to DND')
    t.ok(aliceLog.some((m) => /Teams session cleared for Alice Adams/.test(m)), 'and when it was cleared')
    t.equal(lines().filter((l) => l.level >= 50).length, 0, 'no error was logged')
  })
}
