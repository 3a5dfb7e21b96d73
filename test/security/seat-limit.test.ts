/**
 * A tenant admin cannot lift its own tenant's seat limit: seats are what the operator sells, so only an operator
 * (or the relay's API token) changes them. Every refusal says why in words.
 */
import t from 'tap'
import { API_TOKEN, call, createAccounts, startConsoleRelay } from '../console/fixtures/console-relay.js'

t.test('only an operator sets a tenant\'s seat limit', async (t) => {
  const r = await startConsoleRelay()
  t.teardown(() => r.stop())
  const { operator, tenantAdmin } = await createAccounts(r.base, { operator: { username: 'ops', password: 'correct horse battery' }, tenantAdmin: { username: 'contoso-admin', password: 'contoso admin pass' } })
  const put = (limit: unknown, who?: { cookie: string; csrf: string }, headers?: Record<string, string>) =>
    call(r.base, 'PUT', '/tenants/contoso/seats', { body: { limit }, ...(who ? { cookie: who.cookie, csrf: who.csrf } : {}), ...(headers ? { headers } : {}) })

  const own = await put(100_000, tenantAdmin)
  t.equal(own.status, 403, 'the tenant admin cannot raise its own limit')
  t.match(own.body.error?.message, /seat limit.*operator/i, 'in words that say who can')
  t.equal((await put(null, tenantAdmin)).status, 403, 'nor remove it')
  t.equal((await put(5, undefined)).status, 401, 'no session, no token: 401')
  t.equal((await put(5, { cookie: operator!.cookie, csrf: '' })).status, 403, 'an operator without the CSRF token: 403')
  const set = await put(5, operator)
  t.equal(set.status, 200, 'an operator sets it')
  t.equal(((await call(r.base, 'GET', '/console/tenants', { cookie: tenantAdmin!.cookie })).body.tenants as Array<{ id: string; seats: { limit: number | null } }>)[0]?.seats.limit, 5, 'the tenant admin sees the new limit')
  const bad = await put(-1, operator)
  t.equal(bad.status, 400, 'a negative limit is refused')
  t.match(bad.body.error?.message, /limit/, 'in words')
  t.equal((await put(7, undefined, { authorization: `Bearer ${API_TOKEN}` })).status, 200, 'the relay\'s API token sets it too')
})
