import t from 'tap'
import pino from 'pino'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { GraphSimulator } from '../../cloud-relay/graph-sim/graph-simulator.js'
import { Relay } from '../../cloud-relay/src/app.js'
import { parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { eventually } from '../helpers/eventually.js'
import { createPostgresSchema } from '../helpers/postgres.js'
import { IMPORT_ROLES } from './fixtures/import-world.js'

const TOKEN = 'test-token-0123456789abcdefghijklmn'
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

t.test('the Relay wires import, mapping and seats from its config', async (t) => {
  const sim = new GraphSimulator({
    users: [
      { displayName: 'Alice', userPrincipalName: 'alice@contoso.example', proxyAddresses: ['SMTP:alice@contoso.example', 'smtp:desk201@contoso.example'] },
      { displayName: 'Bob', userPrincipalName: 'bob@contoso.example' },
      { displayName: 'Guest', userPrincipalName: 'guest@fabrikam.example' },
    ],
  })
  const app = sim.addApp({ roles: IMPORT_ROLES })
  await sim.start()
  t.teardown(() => sim.stop())
  const pg = await createPostgresSchema()
  t.teardown(() => pg.drop())
  const config = parseRelayConfig({
    logLevel: 'silent',
    broker: { mode: 'embedded', host: '127.0.0.1', port: 0, relayPassword: 'relay-secret', passwordListener: true },
    graph: { authorityHost: sim.url, graphBaseUrl: sim.url },
    http: { port: 0, apiToken: TOKEN },
    tenants: [{
      id: 'contoso',
      graph: { tenantId: sim.tenantId, clientId: app.clientId, clientSecret: app.clientSecret },
      directory: { domains: ['contoso.example'], seats: 1 },
      gateways: [{ id: 'gw1', password: 'gateway-secret' }],
    }],
  })
  const relay = new Relay(config, { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters(), graphCaPem: sim.caPem, databaseUrl: pg.url })
  await relay.start()
  t.teardown(() => relay.stop())
  const base = `http://127.0.0.1:${relay.httpPort}/api/v1/tenants/contoso`

  const started = await fetch(`${base}/imports`, { method: 'POST', headers: auth, body: JSON.stringify({}) })
  t.equal(started.status, 202)
  const { id } = (await started.json()) as { id: number }
  const run = await eventually(async () => {
    const body = (await (await fetch(`${base}/imports/${id}`, { headers: auth })).json()) as { state: string; result: { counts: Record<string, number> } | null; error: string | null }
    return body.state === 'running' ? undefined : body
  }, 'the import')
  t.match(run, { state: 'succeeded', result: { counts: { matched: 2, added: 2 } } }, 'the domain filter from the config applies')
  t.same((await relay.directory.setSeatLimit('contoso', 1)), { deactivated: 0, reactivated: 0, seated: 1 }, 'the configured seat limit was applied by the import')

  sim.resetStats()
  await relay.engine.onDirectory('gw1', { connectorId: 'pbx', entries: [{ endpointId: '201', name: 'Desk 201', email: 'Desk201@Contoso.example' }] })
  await relay.engine.idle()
  const alice = relay.engine.personByEmail('contoso', 'alice@contoso.example')
  t.equal(alice?.endpoints.size, 1, 'the alias maps extension 201 to Alice')
  t.equal(sim.requestCount('getUser'), 0, 'without a findUser request')
  const report = (await (await fetch(`${base}/mapping`, { headers: auth })).json()) as { endpoints: Array<{ via: string }> }
  t.same(report.endpoints.map((e) => e.via), ['proxyAddress'])
})
