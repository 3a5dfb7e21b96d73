import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { Agent } from 'undici'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { buildServer } from '../../cloud-relay/src/http/server.js'
import { RelayLink } from '../../cloud-relay/src/ingest/relay-link.js'
import { parseGatewayConfig } from '../../gateway/src/config/load.js'
import { Gateway, GATEWAY_VERSION } from '../../gateway/src/app.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { RelayStore } from '../../cloud-relay/src/store/relay-store.js'
import { openSqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { bundleRoutes } from '../../cloud-relay/src/updates/bundle-routes.js'
import { DownloadTokens } from '../../cloud-relay/src/updates/download-tokens.js'
import { ReleaseLibrary } from '../../cloud-relay/src/updates/release-library.js'
import { UpdateStore } from '../../cloud-relay/src/updates/update-store.js'
import type { StatusData, UpdateCommandData, UpdateProgressData } from '../../gateway/protocol/schemas.js'
import { systemClock, type Clock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { TRIAL_FAILURE_FILE, UpdateAgent } from '../../gateway/src/update/update-agent.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { FaultProxy } from '../helpers/fault-proxy.js'
import { FakeSlots } from '../helpers/fake-slots.js'
import type { TapTest } from '../helpers/tap-types.js'

const BUNDLE = randomBytes(12 * 1024 * 1024)
const SHA = createHash('sha256').update(BUNDLE).digest('hex')

async function relayServer(t: TapTest) {
  const { logger } = captureLogger('silent')
  const dir = await mkdtemp(join(tmpdir(), 'agent-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=relay.test', '-addext', 'subjectAltName=IP:127.0.0.1'])
  const db = await openSqlClient({ dataDir: 'memory' }, logger)
  t.teardown(() => db.close())
  await migrate(db, logger)
  const updates = new UpdateStore(db)
  const releases = new ReleaseLibrary({ dir: join(dir, 'bundles') }, { store: updates, clock: systemClock })
  await writeFile(join(dir, 'upload.raucb'), BUNDLE)
  const { Readable } = await import('node:stream')
  await releases.upload('2.0.0', Readable.from([BUNDLE]), 64 * 1024 * 1024, '', 'test')
  const tokens = new DownloadTokens(randomBytes(32), 3_600_000)
  const ranges: string[] = []
  const http = buildServer({
    store: new RelayStore(db),
    explainer: { explain: () => undefined, listPeople: () => [] },
    logger, apiToken: undefined, version: 'test', health: () => ({ broker: true, store: db.kind }),
    https: { certPem: await readFile(cert, 'utf8'), keyPem: await readFile(key, 'utf8') },
    publicRoutes: [bundleRoutes({ tokens, release: (v) => releases.get(v), gatewayAllowed: (id) => (id === 'gw1' ? { ok: true } : { ok: false, reason: 'unknown' }), now: () => Date.now() })],
  })
  http.addHook('onRequest', async (request) => {
    ranges.push(typeof request.headers.range === 'string' ? request.headers.range : 'none')
  })
  await http.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => http.close())
  const port = (http.server.address() as { port: number }).port
  const proxy = await FaultProxy.start({ port })
  t.teardown(() => proxy.close())
  const dispatcher = new Agent({ connect: { ca: await readFile(cert, 'utf8') } })
  t.teardown(() => dispatcher.close())
  const command = (change: Partial<UpdateCommandData> = {}): UpdateCommandData => ({
    updateId: 'r-0000abcd', version: '2.0.0', size: BUNDLE.length, sha256: SHA,
    url: `https://127.0.0.1:${proxy.port}/updates/v1/bundles/2.0.0`, token: tokens.issue('gw1', '2.0.0', Date.now()), installAt: 'now', ...change,
  })
  return { dir, proxy, dispatcher, command, ranges, logger, tokens }
}

function agentOn(setup: Awaited<ReturnType<typeof relayServer>>, slots: FakeSlots, runningVersion = '1.0.0', clock: Clock = systemClock) {
  const reports: UpdateProgressData[] = []
  const agent = new UpdateAgent({ dir: join(setup.dir, 'data', 'update'), runningVersion, retryBaseMs: 20, reportEveryMs: 0 }, { installer: slots, clock, logger: setup.logger, counters: new Counters(), dispatcher: setup.dispatcher })
  agent.attach((p) => reports.push(p))
  return { agent, reports }
}

t.test('the agent downloads, continues after the connection is cut, checks, installs and reboots', async (t) => {
  const setup = await relayServer(t)
  const slots = new FakeSlots('A')
  const { agent, reports } = agentOn(setup, slots)
  await agent.start()
  let cut = false
  agent.onProgress((p) => {
    if (!cut && p.state === 'downloading' && (p.bytes ?? 0) > 0) {
      cut = true
      setup.proxy.cut() // every open connection is reset: the download breaks off mid-way
      setup.proxy.restore()
    }
  })
  t.same(await agent.accept(setup.command()), { ok: true })
  await agent.idle()
  await eventually(() => slots.calls.includes('reboot'), 'the reboot')
  t.same(slots.calls, ['verify', 'install', 'reboot'])
  t.ok(slots.installed?.equals(BUNDLE), 'the installed bundle is the relay\'s, byte for byte')
  const resumed = setup.ranges.find((r) => r !== 'none')
  t.match(resumed, /^bytes=[1-9]\d*-$/, `the second request continued where the first stopped (${resumed})`)
  const states = [...new Set(reports.map((r) => r.state))]
  t.same(states, ['queued', 'downloading', 'verifying', 'installing', 'rebooting'])
  t.ok(reports.filter((r) => r.state === 'downloading').every((r) => r.total === BUNDLE.length && (r.bytes ?? -1) <= BUNDLE.length), 'downloading reports bytes of total')
  t.match(reports.at(-1), { state: 'rebooting', runningVersion: '1.0.0', slot: 'A', updateId: 'r-0000abcd' })
  t.same(await agent.accept(setup.command({ updateId: 'r-0000ffff', version: '3.0.0' })), { ok: false, error: { code: 'GW_UPDATE_BUSY', message: 'the box is already updating to 2.0.0 (rebooting): wait until it finishes' } })
  await agent.stop()

  // After the reboot: the new version in slot B, healthy → marked good.
  slots.slot = 'B'
  const after = agentOn(setup, slots, '2.0.0')
  await after.agent.start()
  await after.agent.idle()
  t.ok(slots.calls.includes('markGood'), 'the new slot is marked good')
  t.match(after.agent.latest(), { state: 'healthy', runningVersion: '2.0.0', slot: 'B' })
  after.agent.onConnect()
  t.match(after.reports.at(-1), { state: 'healthy' }, 'the report is sent again on connect')
  await after.agent.stop()
})

t.test('a restart in the middle of a download continues from the partial file on the data partition', async (t) => {
  const setup = await relayServer(t)
  const slots = new FakeSlots('A')
  const first = agentOn(setup, slots)
  await first.agent.start()
  let stopping: Promise<void> | undefined
  first.agent.onProgress((p) => {
    if (!stopping && p.state === 'downloading' && (p.bytes ?? 0) > 1024 * 1024) {
      stopping = first.agent.stop()
      setup.proxy.cut()
      setup.proxy.restore()
    }
  })
  await first.agent.accept(setup.command())
  await eventually(() => stopping !== undefined, 'the first agent to stop mid-download')
  await stopping
  const partial = await stat(join(setup.dir, 'data', 'update', `${SHA}.raucb.part`))
  t.ok(partial.size > 0 && partial.size < BUNDLE.length, `a partial file of ${partial.size} bytes is left`)
  setup.ranges.length = 0
  const second = agentOn(setup, slots)
  await second.agent.start()
  await second.agent.idle()
  await eventually(() => slots.calls.includes('reboot'), 'the reboot')
  t.match(setup.ranges[0], new RegExp(`^bytes=${partial.size}-$`), 'the restarted agent asked for the rest only')
  t.ok(slots.installed?.equals(BUNDLE))
})

t.test('a power cut during the install: a bundle that lost its last writes is fetched again, an upload is asked for again', async (t) => {
  const setup = await relayServer(t)
  const dir = join(setup.dir, 'data', 'update')
  await mkdir(dir, { recursive: true })
  // What a cut can leave: the state says installing, the bundle's tail was never written (zeros).
  const damaged = Buffer.concat([BUNDLE.subarray(0, BUNDLE.length - 4096), Buffer.alloc(4096)])
  const command = setup.command()
  await writeFile(join(dir, `${command.sha256}.raucb`), damaged)
  await writeFile(join(dir, 'update-state.json'), JSON.stringify({ command, state: 'installing', previousVersion: '1.0.0', at: Date.now() }))
  const slots = new FakeSlots('A')
  const { agent } = agentOn(setup, slots)
  await agent.start()
  await agent.idle()
  await eventually(() => slots.calls.includes('reboot'), 'the reboot')
  t.ok(slots.installed?.equals(BUNDLE), 'RAUC got the relay\'s bundle again, not the damaged file')
  t.ok(setup.ranges.length > 0, 'it was downloaded again')
  await agent.stop()

  const uploaded = { ...command, updateId: 'upload-1', version: 'uploaded', url: 'https://setup-page.invalid/upload', token: 'uploaded-on-the-setup-page' }
  await writeFile(join(dir, `${uploaded.sha256}.raucb`), damaged)
  await writeFile(join(dir, 'update-state.json'), JSON.stringify({ command: uploaded, state: 'installing', previousVersion: '1.0.0', at: Date.now() }))
  const slots2 = new FakeSlots('A')
  const again = agentOn(setup, slots2)
  await again.agent.start()
  await again.agent.idle()
  t.match(again.agent.latest(), { state: 'failed', reason: /the uploaded bundle was damaged when the box restarted during the install .*: upload it again/ })
  t.notOk(slots2.calls.includes('install'), 'nothing installed from the damaged upload')
  await again.agent.stop()
})

t.test('a wrong hash, a refused signature, a refused token and a rollback are reported with the reason', async (t) => {
  const setup = await relayServer(t)
  const cases: Array<[string, Partial<UpdateCommandData>, boolean, RegExp]> = [
    ['a wrong hash', { sha256: 'f'.repeat(64), updateId: 'r-00000001' }, false, /SHA-256 is [0-9a-f]{64}, the command said f{64}: it was damaged or replaced/],
    ['a bundle signed with another key', { updateId: 'r-00000002' }, true, /not signed by a key this box trusts/],
    ['a token for another gateway', { updateId: 'r-00000003', token: setup.tokens.issue('gw9', '2.0.0', Date.now()) }, false, /relay refused the download \(HTTP 403: Gateway gw9 may not fetch updates/],
    ['a size the relay does not offer', { updateId: 'r-00000004', size: BUNDLE.length + 1 }, false, /offers 12582912 bytes but the command said 12582913/],
  ]
  for (const [what, change, refuse, reason] of cases) {
    const slots = new FakeSlots('A')
    slots.refuseSignature = refuse
    const { agent, reports } = agentOn(setup, slots)
    await agent.start()
    await agent.accept(setup.command(change))
    await agent.idle()
    t.match(reports.at(-1), { state: 'failed', reason }, `${what}: ${reports.at(-1)?.reason}`)
    t.notOk(slots.calls.includes('install'), `${what}: nothing installed`)
    await agent.stop()
    await rm(join(setup.dir, 'data'), { recursive: true, force: true })
  }

  // A box that comes back on the old version after the reboot reports the rollback.
  const slots = new FakeSlots('A')
  const { agent } = agentOn(setup, slots)
  await agent.start()
  await agent.accept(setup.command({ updateId: 'r-00000005' }))
  await agent.idle()
  await eventually(() => slots.calls.includes('reboot'), 'the reboot')
  await agent.stop()
  const back = agentOn(setup, slots, '1.0.0')
  await back.agent.start()
  await back.agent.idle()
  t.match(back.agent.latest(), { state: 'rolled-back', runningVersion: '1.0.0', slot: 'A', reason: /came back on 1.0.0 in slot A: version 2.0.0 did not start within the boot attempts/ })
  t.notOk(slots.calls.includes('markGood'))
  t.same(await back.agent.accept(setup.command({ updateId: 'r-00000006', version: '1.0.0' })), { ok: true }, 'an update to the running version is healthy at once')
  t.match(back.agent.latest(), { state: 'healthy' })
  await back.agent.stop()

  // The image's trial check left why it gave the new slot up: that is the reason the admin reads.
  const again = agentOn(setup, slots)
  await again.agent.start()
  await again.agent.accept(setup.command({ updateId: 'r-00000007' }))
  await again.agent.idle()
  await eventually(() => slots.calls.filter((c) => c === 'reboot').length === 2, 'the second reboot')
  await again.agent.stop()
  const updateDir = join(setup.dir, 'data', 'update')
  await writeFile(join(updateDir, TRIAL_FAILURE_FILE), 'version 2.0.0 in slot B: the gateway stopped at start 3 times (last exit status 1)\n')
  const told = agentOn(setup, slots, '1.0.0')
  await told.agent.start()
  await told.agent.idle()
  t.match(told.agent.latest(), { state: 'rolled-back', reason: 'the box came back on 1.0.0 in slot A: version 2.0.0 in slot B: the gateway stopped at start 3 times (last exit status 1)' })
  t.notOk(existsSync(join(updateDir, TRIAL_FAILURE_FILE)), 'read once: a later rollback is not blamed on it')
  await told.agent.stop()
})

t.test('a real gateway takes cmd/update from the relay link, reports its slot in its status and progress on its update topic', async (t) => {
  const setup = await relayServer(t)
  const counters = new Counters()
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: true }, { relayUsername: 'relay', relayPassword: 'relay-pw', verifyGateway: (id, pw) => id === 'gw1' && pw === 'gw1-password' }, { logger: setup.logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const url = `mqtt://127.0.0.1:${broker.port}`
  const statuses: StatusData[] = []
  const progress: UpdateProgressData[] = []
  let seq = 0
  const link = new RelayLink({ url, username: 'relay', password: 'relay-pw', commandTimeoutMs: 5000 }, {
    knowsGateway: () => false,
    gatewayAllowed: (id) => (id === 'gw1' ? { ok: true, tenantId: 't1' } : { ok: false, reason: 'unknown' }),
    onStatus: async (_id, data) => { statuses.push(data) },
    onLink: async () => undefined,
    onEndpoint: async () => undefined,
    onDirectory: async () => undefined,
    onUpdateProgress: (_id, data) => { progress.push(data) },
    nextCommandSeq: async () => ++seq,
  }, { logger: setup.logger, counters })
  await link.start()
  t.teardown(() => link.stop())

  const slots = new FakeSlots('A')
  const dataDir = join(setup.dir, 'gw-data')
  // As the box passes it: a dispatcher made at the first download (undici loads only then).
  let made = 0
  const dispatcher = async () => { made++; return setup.dispatcher }
  const agent = new UpdateAgent({ dir: join(dataDir, 'update'), runningVersion: GATEWAY_VERSION, retryBaseMs: 20 }, { installer: slots, clock: systemClock, logger: setup.logger, counters, dispatcher })
  t.equal(made, 0, 'no dispatcher before an update comes')
  const gateway = new Gateway(parseGatewayConfig({
    gatewayId: 'gw1', relay: { url, username: 'gw1', password: 'gw1-password' }, dataDir, logLevel: 'info', telemetryIntervalS: 60, ownedDndGraceS: 600, connectors: [],
  }, new Map()), { logger: setup.logger, clock: systemClock, counters, registry: new Map(), updates: agent, bootedSlot: 'A' })
  await gateway.start()
  t.teardown(() => gateway.stop())
  await agent.start()
  t.teardown(() => agent.stop())
  await eventually(() => statuses.find((s) => s.state === 'online'), 'the gateway\'s birth')
  t.match(statuses.find((s) => s.state === 'online'), { version: GATEWAY_VERSION, slot: 'A' }, 'the status names the booted slot')

  const result = await link.sendUpdate('gw1', setup.command())
  t.match(result, { ok: true, command: 'cmd.update' })
  await eventually(() => progress.some((p) => p.state === 'rebooting'), 'progress up to rebooting at the relay', 20_000)
  t.same([...new Set(progress.map((p) => p.state))], ['queued', 'downloading', 'verifying', 'installing', 'rebooting'])
  t.match(progress.at(-1), { updateId: 'r-0000abcd', version: '2.0.0', runningVersion: GATEWAY_VERSION, slot: 'A' })
  t.ok(made >= 1, 'the download made the dispatcher')
  const busy = await link.sendUpdate('gw1', setup.command({ updateId: 'r-0000eeee', version: '3.0.0' }))
  t.match(busy, { ok: false, error: { code: 'GW_UPDATE_BUSY' } }, 'a second update is refused in words while one runs')
})
