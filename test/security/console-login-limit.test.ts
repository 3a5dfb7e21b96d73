/**
 * Console sign-in limits hold under parallel guessing: an attempt is counted before its password is checked, per
 * address and per account, so a burst of 50 guesses gets at most maxFailures (5) evaluated and even the right
 * password inside the burst is refused. A success clears only its own account's count. The map of counters is
 * bounded.
 */
import { randomBytes, scrypt } from 'node:crypto'
import { promisify } from 'node:util'
import { pino } from 'pino'
import t from 'tap'
import { AttemptLimiter } from '../../cloud-relay/src/console/attempt-limiter.js'
import { ConsoleAuth } from '../../cloud-relay/src/console/console-auth.js'
import { ConsoleStore } from '../../cloud-relay/src/console/console-store.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { openSqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { systemClock } from '#kernel/clock.js'
import { call, createAccounts, startConsoleRelay } from '../console/fixtures/console-relay.js'

const OPERATOR = { username: 'ops', password: 'correct horse battery' }
const OTHER = { username: 'contoso-admin', password: 'contoso admin pass' }

t.test('50 parallel wrong sign-ins: at most 5 evaluated, the rest 429, the right password in the burst too', async (t) => {
  const r = await startConsoleRelay()
  t.teardown(() => r.stop())
  await createAccounts(r.base, { operator: OPERATOR })
  const login = (password: string) => call(r.base, 'POST', '/console/login', { body: { username: OPERATOR.username, password } })
  const burst = Array.from({ length: 50 }, (_, i) => login(`wrong password ${i}`))
  await Promise.race(burst) // the burst is under way: some answers are in, others are still being checked
  const right = await login(OPERATOR.password)
  const answers = await Promise.all(burst)
  const evaluated = answers.filter((a) => a.status === 401).length
  const limited = answers.filter((a) => a.status === 429)
  t.ok(evaluated <= 5, `at most 5 guesses evaluated (${evaluated})`)
  t.equal(evaluated + limited.length, 50, 'every other guess is refused with 429')
  t.match(limited[0]?.body.error?.message, /Too many failed sign-ins.*wait \d+ minute/, 'in words that say how long to wait')
  t.equal(right.status, 429, 'the right password inside the burst is refused too')
  t.equal(right.cookie, undefined, 'and no session was made')
})

t.test('a success clears only its own account\'s count, not the address\'s', async (t) => {
  const r = await startConsoleRelay()
  t.teardown(() => r.stop())
  await createAccounts(r.base, { operator: OPERATOR, tenantAdmin: OTHER })
  // createAccounts signed both in once; now four wrong guesses at the operator from this address.
  for (let i = 0; i < 4; i++) t.equal((await call(r.base, 'POST', '/console/login', { body: { username: OPERATOR.username, password: `wrong ${i}` } })).status, 401)
  t.equal((await call(r.base, 'POST', '/console/login', { body: OTHER })).status, 200, 'another account signs in from the same address')
  t.equal((await call(r.base, 'POST', '/console/login', { body: { username: OPERATOR.username, password: 'wrong 4' } })).status, 401, 'the fifth wrong guess is evaluated')
  const right = await call(r.base, 'POST', '/console/login', { body: OPERATOR })
  t.equal(right.status, 429, 'the other account\'s success did not reset the guesses at the operator')
})

t.test('the limiter counts before checking, per key, and keeps a bounded map', async (t) => {
  let now = 1_000_000
  const limiter = new AttemptLimiter({ maxAttempts: 3, windowMs: 60_000, maxKeys: 100 }, { now: () => now })
  for (let i = 0; i < 3; i++) t.equal(limiter.take(['address:a', 'account:x']), undefined, `attempt ${i + 1} allowed`)
  t.ok(limiter.take(['address:a', 'account:y']), 'a fourth attempt from the address is refused with a wait')
  t.ok(limiter.take(['address:b', 'account:x']), 'so is a fourth at the account from another address')
  limiter.succeeded(['address:b', 'account:x'], ['account:x'])
  t.equal(limiter.take(['address:c', 'account:x']), undefined, 'a success clears the account\'s count')
  for (let i = 0; i < 1000; i++) limiter.take([`address:${i}`])
  t.ok(limiter.size <= 100, `the map stays bounded (${limiter.size} keys)`)
  now += 61_000
  t.equal(limiter.take(['address:a']), undefined, 'the window passes')
})

t.test('passwords are scrypt with N = 2^17; an older hash still signs in and is rehashed', async (t) => {
  const logger = pino({ level: 'silent' })
  const db = await openSqlClient({ dataDir: 'memory' }, logger)
  t.teardown(() => db.close())
  await migrate(db, logger)
  const store = new ConsoleStore(db)
  const auth = new ConsoleAuth({}, { store, clock: systemClock, logger, tenants: () => ['contoso'] })
  const salt = randomBytes(16)
  const old = (await promisify(scrypt)('an old password here', salt, 32)) as Buffer // node's default: N = 2^14
  await store.createAccount({ username: 'veteran', passwordHash: `scrypt$16384$8$1$${salt.toString('base64')}$${old.toString('base64')}`, role: 'operator', tenantId: null })
  await auth.login('veteran', 'an old password here', '192.0.2.1')
  t.match((await store.findByUsername('veteran'))?.passwordHash, /^scrypt\$131072\$8\$1\$/, 'rehashed with N = 2^17 at sign-in')
  await auth.login('veteran', 'an old password here', '192.0.2.1')
  t.pass('and the new hash signs in')
  const created = await auth.createAccount({ id: 1, username: 'veteran', role: 'operator', tenantId: null, disabled: false, createdAt: new Date() }, { username: 'fresh', password: 'a fresh password', role: 'operator', tenantId: null })
  t.match((await store.findByUsername(created.username))?.passwordHash, /^scrypt\$131072\$/, 'new accounts get N = 2^17')
})
