import t from 'tap'
import pino from 'pino'
import { buildServer } from '../../cloud-relay/src/http/server.js'
import { eventually } from '../helpers/eventually.js'
import { GATEWAY, TENANT, startImportWorld } from './fixtures/import-world.js'

const TOKEN = 'test-token-0123456789abcdef'
const auth = { authorization: `Bearer ${TOKEN}` }
const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`

const w = await startImportWorld({
  backend: 'postgres',
  users: [
    { id: id(1), displayName: 'Alice', userPrincipalName: 'alice@contoso.example' },
    { id: id(2), displayName: 'Bob', userPrincipalName: 'bob@contoso.example' },
  ],
})
t.teardown(() => w.close())
const server = buildServer({
  store: w.store, explainer: w.engine, people: w.engine, directory: w.directory, logger: pino({ level: 'silent' }), apiToken: TOKEN, version: 'test',
  health: () => ({ broker: true, store: 'postgres' }),
})
t.teardown(() => server.close())

interface Run { id: number; state: string; dryRun: boolean; progress: { phase: string; percent: number }; result: { counts: Record<string, number> } | null; error: string | null }

async function finished(runId: number): Promise<Run> {
  return eventually(async () => {
    const res = await server.inject({ method: 'GET', url: `/api/v1/tenants/${TENANT}/imports/${runId}`, headers: auth })
    const run = res.json<Run>()
    return run.state === 'running' ? undefined : run
  }, `import run ${runId}`)
}

t.test('start a dry run and an import over the API, read progress and result', async (t) => {
  t.equal((await server.inject({ method: 'POST', url: `/api/v1/tenants/${TENANT}/imports`, payload: {} })).statusCode, 401, 'behind the bearer token')
  const dry = await server.inject({ method: 'POST', url: `/api/v1/tenants/${TENANT}/imports`, headers: auth, payload: { dryRun: true } })
  t.equal(dry.statusCode, 202)
  const dryRun = await finished(dry.json<Run>().id)
  t.match(dryRun, { state: 'succeeded', dryRun: true, progress: { phase: 'done', percent: 100 }, result: { counts: { added: 2 } } })
  // The import's first page is throttled (Retry-After 1 s), so it is certainly still running when the second one asks.
  w.sim.faults.throttleNext(1, 1)
  const real = await server.inject({ method: 'POST', url: `/api/v1/tenants/${TENANT}/imports`, headers: auth, payload: {} })
  const busy = await server.inject({ method: 'POST', url: `/api/v1/tenants/${TENANT}/imports`, headers: auth, payload: {} })
  t.equal(busy.statusCode, 409, 'one import per tenant at a time')
  t.match(busy.json(), { error: { code: 'DIRECTORY_BUSY', message: /wait for it/ } })
  t.match(await finished(real.json<Run>().id), { state: 'succeeded', result: { counts: { added: 2 } } })
  const list = await server.inject({ method: 'GET', url: `/api/v1/tenants/${TENANT}/imports`, headers: auth })
  t.equal(list.json<{ runs: Run[] }>().runs.length, 2)
  const unknown = await server.inject({ method: 'POST', url: '/api/v1/tenants/nowhere/imports', headers: auth, payload: {} })
  t.match(unknown, { statusCode: 404 })
  t.match(unknown.json(), { error: { code: 'DIRECTORY_UNKNOWN_TENANT', message: /use a tenant id from the config/ } })
  t.equal((await server.inject({ method: 'POST', url: `/api/v1/tenants/${TENANT}/imports`, headers: auth, payload: { dryRun: 'maybe' } })).statusCode, 400)
})

t.test('mapping report, manual mapping and seats over the API', async (t) => {
  await w.pbx([{ endpointId: '201', name: 'Desk', email: 'nobody@contoso.example' }])
  const report = await server.inject({ method: 'GET', url: `/api/v1/tenants/${TENANT}/mapping`, headers: auth })
  t.match(report.json(), { imported: true, unmatchedPbx: [{ email: 'nobody@contoso.example' }] })
  const bob = (await w.directoryStore.listTenantPeople(TENANT)).find((p) => p.graphUserId === id(2))!
  const put = await server.inject({ method: 'PUT', url: `/api/v1/tenants/${TENANT}/mappings`, headers: auth, payload: { gatewayId: GATEWAY, connectorId: 'osbiz', endpointId: '201', personId: bob.id } })
  t.equal(put.statusCode, 200)
  await w.engine.idle()
  t.match((await server.inject({ method: 'GET', url: `/api/v1/tenants/${TENANT}/mapping`, headers: auth })).json(), { endpoints: [{ endpointId: '201', personId: bob.id, via: 'manual' }], unmatchedPbx: [] })
  const badPerson = await server.inject({ method: 'PUT', url: `/api/v1/tenants/${TENANT}/mappings`, headers: auth, payload: { gatewayId: GATEWAY, connectorId: 'osbiz', endpointId: '201', personId: 424242 } })
  t.match(badPerson, { statusCode: 404 })
  const seats = await server.inject({ method: 'PUT', url: `/api/v1/tenants/${TENANT}/seats`, headers: auth, payload: { limit: 1 } })
  t.same(seats.json(), { deactivated: 1, reactivated: 0, seated: 1 })
  // Bob, the most recently added, lost his seat: an admin cannot switch him back on behind the seat limit's back.
  const behindSeats = await server.inject({ method: 'PUT', url: `/api/v1/people/${bob.id}/sync`, headers: auth, payload: { syncMode: 'full' } })
  t.equal(behindSeats.statusCode, 409, 'sync mode of a person without a seat is refused')
  t.match(behindSeats.json(), { error: { code: 'HTTP_CONFLICT', message: /seat limit.*raise the limit/ } })
  t.match(await w.directoryStore.getPerson(bob.id), { active: false, syncMode: 'off' }, 'and nothing changed')
  t.equal((await server.inject({ method: 'PUT', url: `/api/v1/tenants/${TENANT}/seats`, headers: auth, payload: { limit: -1 } })).statusCode, 400, 'a negative limit is refused')
  const removed = await server.inject({ method: 'DELETE', url: `/api/v1/tenants/${TENANT}/mappings/${GATEWAY}/osbiz/201`, headers: auth })
  t.equal(removed.statusCode, 200)
  t.equal((await server.inject({ method: 'DELETE', url: `/api/v1/tenants/${TENANT}/mappings/${GATEWAY}/osbiz/201`, headers: auth })).statusCode, 404)
  const openapi = (await server.inject({ method: 'GET', url: '/api/v1/openapi.json', headers: auth })).json<{ paths: Record<string, unknown> }>()
  t.ok(openapi.paths['/api/v1/tenants/{tenant}/imports/{runId}'], 'the routes are in the OpenAPI document')
})
