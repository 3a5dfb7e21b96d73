import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { call, startBox, type BoxUnderTest } from '../box-ui/fixtures/box-harness.js'

const PASSWORD = 'correct horse battery'

async function signIn(box: BoxUnderTest): Promise<{ cookie: string; csrf: string }> {
  const res = await call(`${box.origin}/api/login`, { method: 'POST', body: { password: PASSWORD } })
  if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${res.text}`)
  const cookie = String(res.headers['set-cookie']).split(';')[0] ?? ''
  return { cookie, csrf: (JSON.parse(res.text) as { csrfToken: string }).csrfToken }
}

t.test('an unclaimed box asks for the setup code printed on its console; 20 racing setups: exactly one wins', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())

  // Printed on the console with the setup URL, logged, and kept in a 0600 file until used.
  const code = box.setupCode()
  t.ok(code, `the box printed a setup code on its console: ${JSON.stringify(box.consoleText().slice(0, 300))}`)
  if (!code) return
  t.match(box.consoleText(), box.origin, 'next to the setup page address')
  t.ok(box.logRing.lines().some((l) => l.msg.includes(code) && `${l.msg}${l.detail}`.includes(box.origin)), 'and in the log with the address')
  const file = join(box.dataDir, 'web', 'setup-code')
  t.equal((await stat(file)).mode & 0o777, 0o600, 'the setup code file is 0600')
  t.match(await readFile(file, 'utf8'), code, 'and holds the code')

  // Without the code, or with a wrong one: 403 in words that say where to read it.
  const missing = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD } })
  t.equal(missing.status, 403, 'setup without the code is refused')
  t.match(JSON.parse(missing.text), { error: { code: 'WEB_SETUP_CODE', field: 'setupCode', message: /setup code.*console/is } })
  const wrong = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: 'ABCD-EFGH-JKMN' } })
  t.equal(wrong.status, 403, 'a wrong code is refused')
  t.match(JSON.parse(wrong.text), { error: { code: 'WEB_SETUP_CODE', field: 'setupCode' } })
  t.ok(box.logRing.lines().some((l) => l.msg.includes('setup code refused')), 'the refusal is logged')

  // Lower case and spaces instead of dashes, as someone types it from a screen: accepted. 20 at once: one wins.
  const typed = code.toLowerCase().replaceAll('-', ' ')
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    call(`${box.origin}/api/setup`, { method: 'POST', body: { password: `${PASSWORD} ${i}`, setupCode: i % 2 ? typed : code } })))
  const statuses = results.map((r) => r.status)
  t.equal(statuses.filter((s) => s === 200).length, 1, `exactly one setup wins: ${statuses.join(',')}`)
  t.equal(statuses.filter((s) => s === 409).length, 19, 'the other 19 get 409')
  const winner = results.findIndex((r) => r.status === 200)
  const loser = results.find((r) => r.status === 409)
  t.match(JSON.parse(loser?.text ?? '{}'), { error: { message: /already set/ } }, 'the 409 says the password is already set')
  const stored = JSON.parse(await readFile(join(box.dataDir, 'web', 'admin.json'), 'utf8')) as { N: number }
  t.ok(stored.N >= 2 ** 17, `the password is hashed with scrypt N >= 2^17 (N=${stored.N})`)
  await t.rejects(stat(file), { code: 'ENOENT' }, 'the used code is removed')
  const login = await call(`${box.origin}/api/login`, { method: 'POST', body: { password: `${PASSWORD} ${winner}` } })
  t.equal(login.status, 200, 'the winner\'s password is the one stored')
  const again = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: code } })
  t.equal(again.status, 409, 'the code is single use: a claimed box cannot be set up again')
})

t.test('setup code guesses are limited per address and in total', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const code = box.setupCode()
  t.ok(code, 'the box printed a setup code')
  const guess = (from: string, setupCode = 'ABCD-EFGH-JKMN') => call(`${box.origin}/api/setup`, { method: 'POST', localAddress: from, body: { password: PASSWORD, setupCode } })
  const first = await Promise.all(Array.from({ length: 8 }, () => guess('127.0.0.2')))
  t.same(first.map((r) => r.status).sort(), [403, 403, 403, 403, 403, 429, 429, 429], 'five wrong codes per address, then 429')
  const limited = first.find((r) => r.status === 429)
  t.match(JSON.parse(limited?.text ?? '{}'), { error: { code: 'WEB_SETUP_CODE_RATE_LIMITED', message: /wait/ } }, 'in words')
  t.ok(limited?.headers['retry-after'], 'with Retry-After')
  // Rotating addresses does not help: after 20 wrong codes in total every address waits, even with the right code.
  for (let i = 3; i <= 5; i++) await Promise.all(Array.from({ length: 5 }, () => guess(`127.0.0.${i}`)))
  const fresh = await guess('127.0.0.9', code)
  t.equal(fresh.status, 429, 'after 20 wrong codes from several addresses, a new address waits too')
})

t.test('a factory reset makes a new setup code; the old one no longer works', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const first = box.setupCode() ?? ''
  const setup = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: first } })
  t.equal(setup.status, 200, 'set up with the printed code')
  const { cookie, csrf } = await signIn(box)
  const reset = await call(`${box.origin}/api/factory-reset`, { method: 'POST', headers: { cookie, 'x-csrf-token': csrf }, body: { confirm: 'RESET' } })
  t.equal(reset.status, 200, 'factory reset')
  const second = box.setupCode()
  t.ok(second && second !== first, 'a new code is printed on the console')
  t.equal((await stat(join(box.dataDir, 'web', 'setup-code'))).mode & 0o777, 0o600, 'and kept 0600')
  const old = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: first } })
  t.equal(old.status, 403, 'the old code is refused')
  const fresh = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: second } })
  t.equal(fresh.status, 200, 'the new one works')
})
