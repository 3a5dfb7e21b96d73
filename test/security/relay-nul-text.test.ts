/**
 * A NUL character anywhere in a request to the relay's API is refused with a 400 that says so, before any route
 * runs: PostgreSQL text cannot hold it, and a revoke reason of "\u0000" came back as a 500 (found by the
 * console-http fuzz target, seed 698771969). The real relay on PGlite, over inject.
 */
import t from 'tap'
import { startTwoTenantRelay } from './fixtures/two-tenant-relay.js'

const TOKEN = 'nul-test-api-token-0123456789abcdef'
const world = await startTwoTenantRelay({ relay: { http: { port: 0, apiToken: TOKEN } } })
t.teardown(() => world.stop())
const http = world.relay.httpServer!
const auth = { authorization: `Bearer ${TOKEN}` }
const created = await http.inject({ method: 'POST', url: '/api/v1/tenants/tenant-a/gateways', headers: auth, payload: { id: 'gw-nul', name: 'NUL test' } })
t.equal(created.statusCode, 201, created.body)

t.test('a NUL in a body, a nested field, a field name, the path or the query: 400 in words, nothing changed', async (t) => {
  const cases: Array<{ what: string; url: string; method: 'POST' | 'GET'; payload?: string; where: RegExp }> = [
    { what: 'the fuzz case: a revoke reason', method: 'POST', url: '/api/v1/gateways/gw-nul/revoke', payload: '{"reason":"\\u0000"}', where: /body\.reason/ },
    { what: 'a NUL inside longer text', method: 'POST', url: '/api/v1/gateways/gw-nul/revoke', payload: '{"reason":"stolen\\u0000box"}', where: /body\.reason/ },
    { what: 'a field name', method: 'POST', url: '/api/v1/gateways/gw-nul/revoke', payload: '{"reason":"x","a\\u0000":1}', where: /field name/ },
    { what: 'in an array', method: 'POST', url: '/api/v1/tenants/tenant-a/gateways', payload: '{"id":"gw-2","name":"x","tags":["ok","\\u0000"]}', where: /tags\[1\]/ },
    { what: 'nested 200 deep', method: 'POST', url: '/api/v1/gateways/gw-nul/revoke', payload: `{"reason":"x","deep":${'['.repeat(200)}"\\u0000"${']'.repeat(200)}}`, where: /body\.deep\[0\]/ },
    { what: 'a path parameter', method: 'GET', url: '/api/v1/gateways/gw%00nul/identity', where: /path/ },
    { what: 'a query parameter', method: 'GET', url: '/api/v1/events?endpointId=%00', where: /query/ },
  ]
  for (const c of cases) {
    const response = await http.inject({ method: c.method, url: c.url, headers: { ...auth, ...(c.payload ? { 'content-type': 'application/json' } : {}) }, ...(c.payload ? { payload: c.payload } : {}) })
    t.equal(response.statusCode, 400, `${c.what}: 400`)
    const body = JSON.parse(response.body) as { error: { code: string; message: string } }
    t.equal(body.error.code, 'HTTP_BAD_REQUEST', `${c.what}: the bad-request code`)
    t.match(body.error.message, /NUL character/, `${c.what}: says what was wrong`)
    t.match(body.error.message, c.where, `${c.what}: says where`)
  }
  const identity = await http.inject({ method: 'GET', url: '/api/v1/gateways/gw-nul/identity', headers: auth })
  t.equal(identity.statusCode, 200)
  t.not((JSON.parse(identity.body) as { state?: string; enrollmentState?: string }).enrollmentState ?? (JSON.parse(identity.body) as { state?: string }).state, 'revoked', 'the gateway was not revoked')
  t.notOk(world.lines().some((l) => l.level >= 50), 'no error logged: nothing reached the store')
  t.ok(world.lines().some((l) => l.msg === 'request with a NUL character refused'), 'one info line per refusal')
})

t.test('unauthenticated: 401 before the body is looked at', async (t) => {
  const response = await http.inject({ method: 'POST', url: '/api/v1/gateways/gw-nul/revoke', headers: { 'content-type': 'application/json' }, payload: '{"reason":"\\u0000"}' })
  t.equal(response.statusCode, 401)
})

t.test('ordinary text still goes through, and a revoke with a plain reason works', async (t) => {
  const response = await http.inject({ method: 'POST', url: '/api/v1/gateways/gw-nul/revoke', headers: auth, payload: { reason: 'stolen box, ünïcödé and \\ backslash' } })
  t.equal(response.statusCode, 200, response.body)
})
