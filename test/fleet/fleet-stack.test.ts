import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parseGatewayConfig } from '../../gateway/src/config/load.js'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { fleetRoutes } from '../../cloud-relay/src/fleet/fleet-routes.js'
import { GatewayLiveness } from '../../cloud-relay/src/fleet/gateway-liveness.js'
import { TelemetryStore } from '../../cloud-relay/src/fleet/telemetry-store.js'
import { buildServer } from '../../cloud-relay/src/http/server.js'
import { RelayLink } from '../../cloud-relay/src/ingest/relay-link.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { RelayStore } from '../../cloud-relay/src/store/relay-store.js'
import { openSqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { Gateway } from '../../gateway/src/app.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'

const TOKEN = 'fleet-test-token-0123456789'

t.test('a real gateway and relay: birth, ping round trip, telemetry stored and served, offline on stop', async (t) => {
  const { logger, lines } = captureLogger('info')
  const counters = new Counters()
  const db = await openSqlClient({ dataDir: 'memory' }, logger)
  t.teardown(() => db.close())
  await migrate(db, logger)
  const store = new RelayStore(db)
  await store.upsertTenant('t1', 'Tenant one')
  await store.upsertGateway({ id: 'gw1', tenantId: 't1', name: 'Head office', secretHash: null })
  const telemetry = new TelemetryStore(db)

  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: true }, { relayUsername: 'relay', relayPassword: 'relay-pw', verifyGateway: (id, pw) => id === 'gw1' && pw === 'gw1-password' }, { logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const url = `mqtt://127.0.0.1:${broker.port}`

  let seq = 0
  // eslint-disable-next-line prefer-const
  let link: RelayLink
  const liveness = new GatewayLiveness({}, {
    clock: systemClock, logger, counters,
    gateways: () => [{ id: 'gw1', tenantId: 't1' }],
    ping: (gatewayId) => link.sendPing(gatewayId),
    saveTelemetry: (gatewayId, at, data) => telemetry.append(gatewayId, at, data),
  })
  link = new RelayLink({ url, username: 'relay', password: 'relay-pw', commandTimeoutMs: 5000 }, {
    knowsGateway: () => false,
    gatewayAllowed: (id) => (id === 'gw1' ? { ok: true, tenantId: 't1' } : { ok: false, reason: 'unknown' }),
    onActivity: (id) => liveness.onActivity(id),
    onCommandAnswered: (id, _name, _ok, rtt) => liveness.onCommandAnswered(id, rtt),
    onTelemetry: (id, data) => liveness.onTelemetry(id, data),
    onStatus: async (id, data) => liveness.onStatus(id, data),
    onLink: async (id, data) => liveness.onLink(id, data),
    onEndpoint: async () => undefined,
    onDirectory: async () => undefined,
    nextCommandSeq: async () => ++seq,
  }, { logger, counters })
  await link.start()
  t.teardown(() => link.stop())
  liveness.start()
  t.teardown(() => liveness.stop())

  const http = buildServer({
    store,
    explainer: { explain: () => undefined, listPeople: () => [] },
    logger,
    apiToken: TOKEN,
    version: 'test',
    health: () => ({ broker: link.connected, store: db.kind }),
    apiRoutes: [fleetRoutes({ liveness, telemetry })],
  })
  t.teardown(() => http.close())
  const get = async (path: string, token = TOKEN) => http.inject({ method: 'GET', url: path, headers: token ? { authorization: `Bearer ${token}` } : {} })

  t.match((await get('/api/v1/gateways')).json(), { gateways: [{ id: 'gw1', tenantId: 't1', state: 'offline', reason: 'never connected', lastSeen: null, telemetry: null }] })

  const dataDir = await mkdtemp(join(tmpdir(), 'fleet-gw-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const gateway = new Gateway(parseGatewayConfig({
    gatewayId: 'gw1', relay: { url, username: 'gw1', password: 'gw1-password' }, dataDir, logLevel: 'info', telemetryIntervalS: 5, ownedDndGraceS: 600, connectors: [],
  }, new Map()), { logger: logger.child({ side: 'gateway' }), clock: systemClock, counters: new Counters(), registry: new Map(), outboxRecords: () => 7 })
  await gateway.start()
  let stopped = false
  t.teardown(() => (stopped ? undefined : gateway.stop()))

  const online = await eventually(() => {
    const view = liveness.view('gw1')
    return view?.state === 'online' ? view : undefined
  }, 'gw1 online: its birth, then the ping answered', 10_000)
  t.ok(typeof online.lastRoundTripMs === 'number' && online.lastRoundTripMs >= 0, `ping round trip ${online.lastRoundTripMs} ms`)
  t.equal(online.version, '0.1.0')
  t.ok(counters.get('fleet.pings') >= 1)

  const withTelemetry = await eventually(() => liveness.view('gw1')?.telemetry ?? undefined, 'telemetry from the gateway', 15_000)
  t.match(withTelemetry.data, { version: '0.1.0', outboxRecords: 7 })
  t.ok((withTelemetry.data.memTotalBytes ?? 0) > 0 && (withTelemetry.data.diskTotalBytes ?? 0) > 0 && typeof withTelemetry.data.cpuPercent === 'number', 'machine health in the message')

  const one = await get('/api/v1/gateways/gw1')
  t.equal(one.statusCode, 200)
  t.match(one.json(), { id: 'gw1', state: 'online', reason: 'events both ways in the last 5 minutes', version: '0.1.0', telemetry: { data: { outboxRecords: 7 } } })
  const samples = await eventually(async () => {
    const res = await get('/api/v1/gateways/gw1/telemetry?limit=10')
    const body = res.json() as { samples: unknown[] }
    return body.samples.length > 0 ? body : undefined
  }, 'a stored telemetry row')
  t.match(samples, { gatewayId: 'gw1', samples: [{ data: { version: '0.1.0' } }] })
  const empty = (await get(`/api/v1/gateways/gw1/telemetry?to=${encodeURIComponent('2000-01-01T00:00:00Z')}`)).json() as { samples: unknown[] }
  t.same(empty.samples, [], 'the range filters')
  t.equal((await get('/api/v1/gateways/gw1/telemetry?from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z')).statusCode, 400, 'from after to: 400')
  t.equal((await get('/api/v1/gateways')).statusCode, 200)
  t.equal((await get('/api/v1/gateways', '')).statusCode, 401, 'bearer required')
  const missing = await get('/api/v1/gateways/nope')
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { error: { code: 'HTTP_NOT_FOUND', message: /GET \/api\/v1\/gateways/ } })
  t.equal((await get('/api/v1/gateways?tenant=t2')).json().gateways.length, 0)

  await gateway.stop()
  stopped = true
  const offline = await eventually(() => {
    const view = liveness.view('gw1')
    return view?.state === 'offline' ? view : undefined
  }, 'gw1 offline after it stopped', 10_000)
  t.match(offline.reason, /went offline|last will/)
  t.ok(lines().some((l) => l.msg === 'gateway liveness changed' && l.state === 'offline'), 'the change is logged')
})
