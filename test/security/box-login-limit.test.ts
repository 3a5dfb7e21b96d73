import { randomBytes, scryptSync } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { systemClock } from '#kernel/clock.js'
import { AttemptLimiter } from '../../gateway/src/web/attempt-limiter.js'
import { call, startBox, type BoxUnderTest } from '../box-ui/fixtures/box-harness.js'

const PASSWORD = 'correct horse battery'

async function claimedBox(options: Parameters<typeof startBox>[0] = {}): Promise<BoxUnderTest> {
  const box = await startBox({ build: false, ...options })
  const res = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: box.setupCode() } })
  if (res.status !== 200) throw new Error(`setup failed: ${res.status} ${res.text}`)
  return box
}

const login = (box: BoxUnderTest, password: string, from = '127.0.0.1') =>
  call(`${box.origin}/api/login`, { method: 'POST', localAddress: from, body: { password } })

t.test('50 parallel wrong passwords from one address: at most 5 are checked, the rest wait (429 in words)', async (t) => {
  const box = await claimedBox()
  t.teardown(() => box.close())
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => login(box, `wrong password ${i}`, '127.0.0.2')))
  const checked = results.filter((r) => r.status === 401).length
  const refused = results.filter((r) => r.status === 429)
  t.ok(checked <= 5, `at most 5 guesses were checked (${checked})`)
  t.equal(checked + refused.length, 50, 'every other guess got 429')
  t.match(JSON.parse(refused[0]?.text ?? '{}'), { error: { code: 'WEB_LOGIN_RATE_LIMITED', message: /Too many wrong passwords.*wait/ } }, 'in words')
  t.equal((await login(box, PASSWORD, '127.0.0.2')).status, 429, 'even the right password waits on that address')
  t.equal((await login(box, PASSWORD, '127.0.0.3')).status, 200, 'another address still signs in')
  t.equal((await login(box, PASSWORD, '127.0.0.2')).status, 429, 'a success elsewhere does not clear the count of the guessing address')
  t.ok(box.logRing.lines().some((l) => l.msg === 'setup page sign-in refused' && l.detail.includes('WEB_LOGIN_RATE_LIMITED')), 'refusals are logged')
})

t.test('rotating addresses does not get round the limit: a ceiling for the whole box', async (t) => {
  // The production ceiling is 30 in 5 minutes; 10 here keeps the test short (each check is a 128 MiB scrypt).
  const box = await claimedBox({ loginLimits: { perKey: 5, total: 10, windowMs: 5 * 60_000 } })
  t.teardown(() => box.close())
  const results = await Promise.all(Array.from({ length: 4 }, (_, a) =>
    Promise.all(Array.from({ length: 5 }, (_, i) => login(box, `wrong ${a}.${i}`, `127.0.1.${a + 1}`))))).then((all) => all.flat())
  const checked = results.filter((r) => r.status === 401).length
  t.ok(checked <= 10, `at most 10 wrong passwords are checked whatever the address (${checked} of 20)`)
  const limited = await login(box, PASSWORD, '127.0.1.99')
  t.equal(limited.status, 429, 'then a new address waits too')
  t.match(JSON.parse(limited.text), { error: { message: /Too many wrong passwords/ } })
})

t.test('a password hashed with older scrypt settings still works and is rehashed at N >= 2^17', async (t) => {
  const box = await startBox({
    build: false,
    prepare: async (dataDir) => {
      const salt = randomBytes(16)
      const hash = scryptSync(PASSWORD, salt, 64, { N: 16384, r: 8, p: 1 })
      await mkdir(join(dataDir, 'web'), { recursive: true })
      await writeFile(join(dataDir, 'web', 'admin.json'), JSON.stringify({ algorithm: 'scrypt', N: 16384, r: 8, p: 1, salt: salt.toString('base64'), hash: hash.toString('base64'), setAt: new Date().toISOString() }), { mode: 0o600 })
    },
  })
  t.teardown(() => box.close())
  t.equal((await login(box, 'not the password')).status, 401, 'a wrong password is still wrong')
  t.equal((await login(box, PASSWORD)).status, 200, 'the old hash verifies with its own N')
  const stored = JSON.parse(await readFile(join(box.dataDir, 'web', 'admin.json'), 'utf8')) as { N: number; r: number }
  t.ok(stored.N >= 2 ** 17, `rehashed on sign-in: N=${stored.N}`)
  t.equal((await login(box, PASSWORD)).status, 200, 'and the new hash verifies')
})

t.test('a malformed session cookie is no session, never an error', async (t) => {
  const box = await claimedBox()
  t.teardown(() => box.close())
  for (const cookie of ['box_session=%', 'box_session=%E0%A4%A', '=%; box_session', 'box_session', `box_session=${'%'.repeat(5000)}`]) {
    const session = await call(`${box.origin}/api/session`, { method: 'GET', headers: { cookie } })
    t.equal(session.status, 200, `GET /api/session with cookie ${cookie.slice(0, 30)} answers`)
    t.match(JSON.parse(session.text), { signedIn: false })
    const status = await call(`${box.origin}/api/status`, { method: 'GET', headers: { cookie } })
    t.equal(status.status, 401, 'and the API says signed out')
  }
})

t.test('the attempt limiter forgets the oldest addresses past its cap, and its window slides', async (t) => {
  let now = 1_000_000
  const clock = { ...systemClock, now: () => now }
  const limiter = new AttemptLimiter({ perKey: 2, total: 1_000_000, windowMs: 60_000, maxKeys: 1000 }, { clock })
  for (let i = 0; i < 20_000; i++) limiter.take(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`)
  t.equal(limiter.size, 1000, '20,000 addresses: 1,000 remembered')
  t.ok(limiter.take('10.0.78.31').allowed, 'the newest addresses are the ones kept (10.0.78.31 was the last: its second attempt passes)')
  t.notOk(limiter.take('10.0.78.31').allowed, 'and its third is refused')
  t.ok(limiter.take('10.0.0.0').allowed && limiter.take('10.0.0.0').allowed, 'the oldest address was forgotten: it starts again from zero')
  now += 60_000
  t.ok(limiter.take('10.0.78.31').allowed, 'after the window the address may try again')
})
