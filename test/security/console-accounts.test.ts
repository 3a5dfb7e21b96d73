/**
 * Console accounts can be disabled, deleted and change their password, through routes an operator (or, for one's own
 * password, the account itself) uses; the last enabled operator stays. A session and its live socket end when the
 * account is disabled or deleted, when its password changes (other sessions), and when the session expires. The
 * store's new column comes from a migration that runs on PGlite and on PostgreSQL.
 */
import { once } from 'node:events'
import { pino } from 'pino'
import t from 'tap'
import WebSocket from 'ws'
import { ConsoleStore } from '../../cloud-relay/src/console/console-store.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { openSqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { API_TOKEN, call, createAccounts, signIn, startConsoleRelay, type SignedIn } from '../console/fixtures/console-relay.js'
import { createPostgresSchema } from '../helpers/postgres.js'

const OPERATOR = { username: 'ops', password: 'correct horse battery' }
const OPERATOR2 = { username: 'ops2', password: 'second operator pass' }
const ADMIN = { username: 'contoso-admin', password: 'contoso admin pass' }

/** A live socket of a session, as the console opens it; `closed` resolves with the close code. */
async function liveSocket(base: string, session: SignedIn): Promise<{ closed: Promise<number> }> {
  const url = new URL(base)
  const ws = new WebSocket(`ws://${url.host}/api/v1/live`, { headers: { origin: base, cookie: session.cookie } })
  const closed = once(ws, 'close').then(([code]) => code as number)
  await once(ws, 'message') // hello
  return { closed }
}

function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms).unref())])
}

t.test('disable, delete, change password; sessions and live sockets end with them', async (t) => {
  const r = await startConsoleRelay()
  t.teardown(() => r.stop())
  const { operator, tenantAdmin } = await createAccounts(r.base, { operator: OPERATOR, tenantAdmin: ADMIN })
  const op = operator
  const admin = tenantAdmin!
  const list = async () => (await call(r.base, 'GET', '/console/accounts', { cookie: op.cookie })).body.accounts as Array<{ id: number; username: string; disabled: boolean }>
  const adminId = (await list()).find((a) => a.username === ADMIN.username)!.id
  const ops2 = await call(r.base, 'POST', '/console/accounts', { body: { ...OPERATOR2, role: 'operator' }, cookie: op.cookie, csrf: op.csrf })
  const ops2Id = Number(ops2.body.id)

  await t.test('every new route: no cookie 401, wrong role 403, no CSRF 403, bad input 400', async (t) => {
    const routes: Array<[string, string, unknown]> = [
      ['PUT', `/console/accounts/${adminId}/disabled`, { disabled: true }],
      ['DELETE', `/console/accounts/${adminId}`, undefined],
    ]
    for (const [method, path, body] of routes) {
      t.equal((await call(r.base, method, path, { body })).status, 401, `${method} ${path} without a session`)
      const wrongRole = await call(r.base, method, path, { body, cookie: admin.cookie, csrf: admin.csrf })
      t.equal(wrongRole.status, 403, `${method} ${path} as a tenant admin`)
      t.match(wrongRole.body.error?.message, /operator/, 'says who can')
      t.equal((await call(r.base, method, path, { body, cookie: op.cookie })).status, 403, `${method} ${path} without the CSRF token`)
    }
    const own = { currentPassword: ADMIN.password, newPassword: 'a brand new password' }
    t.equal((await call(r.base, 'PUT', '/console/password', { body: own })).status, 401, 'PUT /console/password without a session')
    t.equal((await call(r.base, 'PUT', '/console/password', { body: own, cookie: admin.cookie })).status, 403, 'PUT /console/password without the CSRF token')
    const token = await call(r.base, 'PUT', '/console/password', { body: own, headers: { authorization: `Bearer ${API_TOKEN}` } })
    t.equal(token.status, 401, 'the API token has no console password to change')

    const bad = async (method: string, path: string, body: unknown, status: number, words: RegExp, what: string) => {
      const answer = await call(r.base, method, path, { body, cookie: op.cookie, csrf: op.csrf })
      t.equal(answer.status, status, what)
      t.match(answer.body.error?.message, words, `${what}: in words`)
    }
    await bad('PUT', '/console/accounts/abc/disabled', { disabled: true }, 400, /id/, 'an account id that is not a number')
    await bad('PUT', `/console/accounts/${adminId}/disabled`, { disabled: 'yes' }, 400, /disabled/, 'disabled that is not true or false')
    await bad('PUT', '/console/accounts/9999/disabled', { disabled: true }, 404, /no console account/i, 'an unknown account')
    await bad('DELETE', '/console/accounts/9999', undefined, 404, /no console account/i, 'deleting an unknown account')
    await bad('PUT', '/console/password', { currentPassword: OPERATOR.password, newPassword: 'short' }, 400, /at least 10 characters/, 'a short new password')
    await bad('PUT', '/console/password', { currentPassword: 'not my password', newPassword: 'a long enough password' }, 403, /current password/, 'a wrong current password')
  })

  await t.test('disabling an account ends its sessions and live socket; it cannot sign in until enabled', async (t) => {
    const socket = await liveSocket(r.base, admin)
    const disabled = await call(r.base, 'PUT', `/console/accounts/${adminId}/disabled`, { body: { disabled: true }, cookie: op.cookie, csrf: op.csrf })
    t.equal(disabled.status, 200)
    t.equal(disabled.body.disabled, true)
    t.ok(await within(socket.closed, 'the disabled account\'s live socket to close'), 'the live socket closed')
    t.equal((await call(r.base, 'GET', '/gateways', { cookie: admin.cookie })).status, 401, 'its session ended')
    const refused = await call(r.base, 'POST', '/console/login', { body: ADMIN })
    t.equal(refused.status, 401, 'it cannot sign in')
    t.match(refused.body.error?.message, /disabled.*operator/, 'and is told why, in words')
    t.equal((await call(r.base, 'PUT', `/console/accounts/${adminId}/disabled`, { body: { disabled: false }, cookie: op.cookie, csrf: op.csrf })).status, 200, 'enabled again')
    await signIn(r.base, ADMIN.username, ADMIN.password)
  })

  await t.test('changing one\'s password ends the account\'s other sessions and their live sockets', async (t) => {
    const here = await signIn(r.base, ADMIN.username, ADMIN.password)
    const elsewhere = await signIn(r.base, ADMIN.username, ADMIN.password)
    const socket = await liveSocket(r.base, elsewhere)
    const changed = await call(r.base, 'PUT', '/console/password', { body: { currentPassword: ADMIN.password, newPassword: 'the new admin password' }, cookie: here.cookie, csrf: here.csrf })
    t.equal(changed.status, 204, 'the password changed')
    t.ok(await within(socket.closed, 'the other session\'s live socket to close'), 'the other session\'s live socket closed')
    t.equal((await call(r.base, 'GET', '/gateways', { cookie: elsewhere.cookie })).status, 401, 'the other session ended')
    t.equal((await call(r.base, 'GET', '/gateways', { cookie: here.cookie })).status, 200, 'this session goes on')
    t.equal((await call(r.base, 'POST', '/console/login', { body: ADMIN })).status, 401, 'the old password no longer works')
    await signIn(r.base, ADMIN.username, 'the new admin password')
  })

  await t.test('the last enabled operator cannot be disabled or deleted', async (t) => {
    t.equal((await call(r.base, 'PUT', `/console/accounts/${ops2Id}/disabled`, { body: { disabled: true }, cookie: op.cookie, csrf: op.csrf })).status, 200, 'another operator can be disabled')
    const last = await call(r.base, 'PUT', `/console/accounts/${op.accountId}/disabled`, { body: { disabled: true }, cookie: op.cookie, csrf: op.csrf })
    t.equal(last.status, 409)
    t.match(last.body.error?.message, /last enabled operator/, 'in words')
    const gone = await call(r.base, 'DELETE', `/console/accounts/${op.accountId}`, { cookie: op.cookie, csrf: op.csrf })
    t.equal(gone.status, 409)
    t.match(gone.body.error?.message, /last enabled operator/, 'in words')
    t.equal((await call(r.base, 'DELETE', `/console/accounts/${ops2Id}`, { cookie: op.cookie, csrf: op.csrf })).status, 204, 'the disabled operator is deleted')
  })

  await t.test('deleting an account ends its sessions and live socket', async (t) => {
    const session = await signIn(r.base, ADMIN.username, 'the new admin password')
    const socket = await liveSocket(r.base, session)
    t.equal((await call(r.base, 'DELETE', `/console/accounts/${adminId}`, { cookie: op.cookie, csrf: op.csrf })).status, 204)
    t.ok(await within(socket.closed, 'the deleted account\'s live socket to close'), 'the live socket closed')
    t.equal((await call(r.base, 'GET', '/gateways', { cookie: session.cookie })).status, 401, 'its session ended')
    t.same((await list()).map((a) => a.username), [OPERATOR.username], 'only the operator is left')
  })

  await t.test('an expired session\'s live socket closes', async (t) => {
    const session = await signIn(r.base, OPERATOR.username, OPERATOR.password)
    const socket = await liveSocket(r.base, session)
    r.advance(13 * 3600_000) // sessions last 12 h
    t.ok(await within(socket.closed, 'the expired session\'s live socket to close'), 'the live socket closed')
    t.equal((await call(r.base, 'GET', '/gateways', { cookie: session.cookie })).status, 401, 'the session has ended')
  })
})

for (const kind of ['pglite', 'postgres'] as const) {
  t.test(`the accounts migration and store on ${kind}`, async (t) => {
    const logger = pino({ level: 'silent' })
    const schema = kind === 'postgres' ? await createPostgresSchema() : undefined
    const db = await openSqlClient({ ...(schema ? { databaseUrl: schema.url } : {}), dataDir: 'memory' }, logger)
    t.teardown(async () => {
      await db.close()
      await schema?.drop()
    })
    await migrate(db, logger)
    const store = new ConsoleStore(db)
    const a = await store.createAccount({ username: 'someone', passwordHash: 'scrypt$x', role: 'operator', tenantId: null })
    t.equal(a?.disabled, false, 'a new account is enabled')
    t.equal(await store.setDisabled(a!.id, true), true)
    t.equal((await store.findByUsername('someone'))?.disabled, true, 'disabled is stored')
    t.equal(await store.countEnabledOperators(), 0)
    await store.setPasswordHash(a!.id, 'scrypt$y')
    t.equal((await store.findByUsername('someone'))?.passwordHash, 'scrypt$y', 'the new hash is stored')
    t.equal(await store.deleteAccount(a!.id), true)
    t.equal(await store.countAccounts(), 0)
  })
}
