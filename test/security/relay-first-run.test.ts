/**
 * A fresh relay cannot be claimed by whoever reaches it first: the first console operator needs the one-time setup
 * secret the relay prints in its log at start and writes to a 0600 file next to its seal key (or the relay's API
 * token). Guesses are limited, and the secret stops working once the first account exists.
 */
import { existsSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { API_TOKEN, call, startConsoleRelay } from '../console/fixtures/console-relay.js'

const OPERATOR = { username: 'ops', password: 'correct horse battery' }

t.test('first run needs the setup secret from the log or the file; it works once', async (t) => {
  const r = await startConsoleRelay()
  t.teardown(() => r.stop())
  const file = join(r.dir, 'console-setup-secret')
  const line = r.lines().find((l) => typeof l.msg === 'string' && /setup secret \S+/.test(l.msg))
  t.ok(line, 'the relay logs the setup secret at start, readable through the service logger\'s redaction')
  const secret = String(/setup secret (\S+)/.exec(String(line?.msg))?.[1])
  t.match(line?.msg, /console\/.*setup secret/, 'the log line says what it is for')
  t.equal(line?.file, file, 'and names the file it is also in')
  t.equal((await readFile(file, 'utf8')).trim(), secret, 'the file holds the same secret')
  t.equal((await stat(file)).mode & 0o777, 0o600, 'readable by the relay\'s user only')

  const missing = await call(r.base, 'POST', '/console/first-run', { body: OPERATOR })
  t.equal(missing.status, 401, 'no secret: refused')
  t.match(missing.body.error?.message, /setup secret.*log|log.*setup secret/, 'in words that say where to find it')
  const wrong = await call(r.base, 'POST', '/console/first-run', { body: { ...OPERATOR, setupSecret: 'guessed-secret-value' } })
  t.equal(wrong.status, 401, 'a wrong secret: refused')
  t.match(wrong.body.error?.message, /not the setup secret|wrong/, 'in words')
  t.equal((await call(r.base, 'GET', '/console/session')).body.firstRun, true, 'the relay is still unclaimed')

  const created = await call(r.base, 'POST', '/console/first-run', { body: { ...OPERATOR, setupSecret: secret } })
  t.equal(created.status, 201, 'the right secret creates the first operator')
  t.ok(created.cookie, 'and signs in')
  t.notOk(existsSync(file), 'the secret file is removed')
  const again = await call(r.base, 'POST', '/console/first-run', { body: { username: 'mallory', password: 'mallory password', setupSecret: secret } })
  t.equal(again.status, 409, 'the secret does not work a second time')
  t.ok(r.lines().some((l) => /first console operator created/.test(l.msg)), 'the relay logs who was created')
})

t.test('the relay\'s API token works in place of the setup secret', async (t) => {
  const r = await startConsoleRelay()
  t.teardown(() => r.stop())
  const created = await call(r.base, 'POST', '/console/first-run', { body: { ...OPERATOR, setupSecret: API_TOKEN } })
  t.equal(created.status, 201)
})

t.test('guesses at the setup secret are limited, even a right one inside the burst', async (t) => {
  const r = await startConsoleRelay()
  t.teardown(() => r.stop())
  const secret = String(r.lines().find((l) => typeof l.setupSecret === 'string')?.setupSecret)
  const guesses = await Promise.all(Array.from({ length: 20 }, (_, i) => call(r.base, 'POST', '/console/first-run', { body: { ...OPERATOR, setupSecret: `guess-${i}-aaaaaaaaaaaaaaaa` } })))
  const limited = guesses.filter((g) => g.status === 429)
  t.ok(limited.length >= 15, `at most 5 guesses evaluated (${20 - limited.length} were)`)
  t.match(limited[0]?.body.error?.message, /wait \d+ minute/, 'a refused guess says how long to wait')
  const right = await call(r.base, 'POST', '/console/first-run', { body: { ...OPERATOR, setupSecret: secret } })
  t.equal(right.status, 429, 'the right secret is refused while the address is paused')
  t.equal((await call(r.base, 'GET', '/console/session')).body.firstRun, true, 'nobody claimed the relay')
})
