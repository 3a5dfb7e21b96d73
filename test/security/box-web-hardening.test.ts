import { request as httpsRequest } from 'node:https'
import { createServer } from 'node:net'
import { totalmem } from 'node:os'
import t from 'tap'
import { call, startBox, type BoxUnderTest } from '../box-ui/fixtures/box-harness.js'

const PASSWORD = 'correct horse battery'

async function signedIn(box: BoxUnderTest): Promise<Record<string, string>> {
  const setup = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: box.setupCode() } })
  if (setup.status !== 200) throw new Error(`setup failed: ${setup.status} ${setup.text}`)
  return { cookie: String(setup.headers['set-cookie']).split(';')[0] ?? '', 'x-csrf-token': (JSON.parse(setup.text) as { csrfToken: string }).csrfToken }
}

/** Opens the live log tail; resolves with its status and a handle that collects what arrives until it ends. */
function openTail(box: BoxUnderTest, cookie: string | undefined): Promise<{ status: number; text: () => string; ended: Promise<void>; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${box.origin}/api/logs/stream`, { rejectUnauthorized: false, agent: false, headers: cookie ? { cookie } : {} }, (res) => {
      let text = ''
      const ended = new Promise<void>((done) => { res.on('close', () => done()); res.on('end', () => done()) })
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('error', () => undefined)
      resolve({ status: res.statusCode ?? 0, text: () => text, ended, close: () => req.destroy() })
    })
    req.on('error', reject)
    req.end()
  })
}

/** Waits for something that must happen; fails (instead of hanging the file) when it does not within 10 s. */
async function surely<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not happen`)), 10_000) })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** Every API route and method that must refuse a request without a session. */
const NEEDS_SESSION: Array<[method: string, path: string, body?: unknown]> = [
  ['GET', '/api/connector-types'],
  ['GET', '/api/connectors'],
  ['PUT', '/api/connectors/x', { type: 'osbiz', config: {} }],
  ['DELETE', '/api/connectors/x'],
  ['POST', '/api/connectors/test', { id: 'x', type: 'osbiz', config: {} }],
  ['GET', '/api/enrollment'],
  ['POST', '/api/enrollment', { code: 'ABCD' }],
  ['GET', '/api/status'],
  ['GET', '/api/logs'],
  ['GET', '/api/logs/stream'],
  ['POST', '/api/diagnostics'],
  ['POST', '/api/factory-reset', { confirm: 'RESET' }],
  ['POST', '/api/logout'],
  ['GET', '/api/network'],
  ['PUT', '/api/network', { mode: 'dhcp', dns: [], ntp: [] }],
  ['POST', '/api/network/confirm'],
  ['GET', '/api/ssh'],
  ['PUT', '/api/ssh', { enabled: false, keys: [] }],
  ['GET', '/api/update'],
  ['POST', '/api/update/bundle'],
]
/** Open without a session, on purpose. */
const PUBLIC = ['GET /api/session', 'POST /api/setup', 'POST /api/login']

t.test('every API route without a session answers 401; the list covers every route the server has', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  await signedIn(box) // a claimed box: signed-out visitors are the attacker here
  const openapi = JSON.parse((await call(`${box.origin}/api/openapi.json`, { method: 'GET' })).text) as { paths: Record<string, Record<string, unknown>> }
  const routes = Object.entries(openapi.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path.replace('{id}', 'x')}`))
  const listed = new Set([...NEEDS_SESSION.map(([m, p]) => `${m} ${p}`), ...PUBLIC])
  t.same(routes.filter((r) => !listed.has(r)), [], 'no route is missing from this test\'s lists')
  for (const [method, path, body] of NEEDS_SESSION) {
    const res = await call(`${box.origin}${path}`, { method, ...(body !== undefined ? { body } : {}) })
    t.equal(res.status, 401, `${method} ${path} without a session: 401`)
    t.match(JSON.parse(res.text), { error: { code: 'WEB_SIGNED_OUT', message: /sign in/ } })
  }
})

t.test('the live log tail: limited streams, and each ends with its session', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const headers = await signedIn(box)
  const tails = await Promise.all(Array.from({ length: 4 }, () => openTail(box, headers.cookie)))
  t.teardown(() => { for (const tail of tails) tail.close() })
  t.same(tails.map((x) => x.status), [200, 200, 200, 200], 'four tails at once are fine')
  const fifth = await openTail(box, headers.cookie)
  t.teardown(() => fifth.close())
  t.equal(fifth.status, 429, 'a fifth at once is refused')
  await surely(fifth.ended, 'the refused tail ending')
  t.match(JSON.parse(fifth.text()), { error: { code: 'WEB_TOO_MANY_TAILS', message: /close/ } }, 'in words')
  box.logRing.push(JSON.stringify({ level: 30, msg: 'a line for the tail' }))
  // Signing out ends every tail of that session.
  const out = await call(`${box.origin}/api/logout`, { method: 'POST', headers })
  t.equal(out.status, 200, 'signed out')
  await surely(Promise.all(tails.map((x) => x.ended)), 'the tails ending with the session')
  t.match(tails[0]?.text() ?? '', 'a line for the tail', 'the tail received lines while signed in')
  t.pass('every tail ended with the session')
  const headers2 = await signedIn2(box)
  const again = await openTail(box, headers2.cookie)
  t.equal(again.status, 200, 'the slots are free again')
  again.close()
})

async function signedIn2(box: BoxUnderTest): Promise<Record<string, string>> {
  const res = await call(`${box.origin}/api/login`, { method: 'POST', body: { password: PASSWORD } })
  return { cookie: String(res.headers['set-cookie']).split(';')[0] ?? '', 'x-csrf-token': (JSON.parse(res.text) as { csrfToken: string }).csrfToken }
}

t.test('diagnostics only reach the configured relay, whatever the request says', async (t) => {
  let connections = 0
  const attacker = createServer((s) => { connections++; s.destroy() })
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => attacker.close(() => resolve())))
  const port = (attacker.address() as { port: number }).port
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const headers = await signedIn(box)
  const res = await call(`${box.origin}/api/diagnostics?url=mqtts://127.0.0.1:${port}`, { method: 'POST', headers, body: { brokerUrls: [`mqtts://127.0.0.1:${port}`], enrollUrl: `https://127.0.0.1:${port}` } })
  t.equal(res.status, 200, 'diagnostics run')
  t.notMatch(res.text, String(port), 'only the configured broker is checked')
  t.equal(connections, 0, 'the host named in the request got no connection')
})

t.test('factory reset needs a session, the CSRF token and the typed word', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const headers = await signedIn(box)
  const reset = (h: Record<string, string>, body: unknown) => call(`${box.origin}/api/factory-reset`, { method: 'POST', headers: h, body })
  t.equal((await reset({}, { confirm: 'RESET' })).status, 401, 'without a session: 401')
  t.equal((await reset({ cookie: headers.cookie ?? '' }, { confirm: 'RESET' })).status, 403, 'without the CSRF token: 403')
  for (const token of ['x', `${headers['x-csrf-token'] ?? ''}x`, (headers['x-csrf-token'] ?? '').slice(1), 'é'.repeat(43)]) {
    const res = await reset({ ...headers, 'x-csrf-token': token }, { confirm: 'RESET' })
    t.equal(res.status, 403, `a wrong CSRF token (${token.length} characters): 403`)
    t.match(JSON.parse(res.text), { error: { code: 'WEB_CSRF' } })
  }
  const unconfirmed = await reset(headers, { confirm: 'reset' })
  t.equal(unconfirmed.status, 400, 'without the typed word: 400')
  t.match(JSON.parse(unconfirmed.text), { error: { field: 'confirm', message: /Type RESET/ } })
  t.equal((await call(`${box.origin}/api/status`, { method: 'GET', headers })).status, 200, 'nothing was reset')
})

t.test('Host and Origin: names the box does not answer to, and other sites, are refused', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const port = new URL(box.origin).port
  for (const host of ['evil.example', `evil.example:${port}`, 'attacker.test:443']) {
    const res = await call(`${box.origin}/api/session`, { method: 'GET', headers: { host } })
    t.equal(res.status, 421, `Host: ${host} is refused (a DNS rebinding page cannot talk to the box)`)
    t.match(JSON.parse(res.text), { error: { code: 'WEB_BAD_HOST', message: /address/ } })
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, '127.0.0.1']) {
    t.equal((await call(`${box.origin}/api/session`, { method: 'GET', headers: { host } })).status, 200, `Host: ${host} is fine`)
  }
  for (const origin of ['null', 'https://evil.example', `http://127.0.0.1:${port}`, '//']) {
    const res = await call(`${box.origin}/api/login`, { method: 'POST', headers: { origin }, body: { password: 'x' } })
    t.equal(res.status, 403, `Origin: ${origin} is refused`)
    t.match(JSON.parse(res.text), { error: { code: 'WEB_BAD_ORIGIN' } })
  }
})

t.test('security headers on the page; body size and JSON depth limits', async (t) => {
  const box = await startBox()
  t.teardown(() => box.close())
  const page = await call(box.url, { method: 'GET' })
  t.equal(page.status, 200, 'the page is served')
  t.match(page.headers['content-type'], /text\/html/)
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, /default-src 'self'/, 'CSP')
  t.match(csp, /frame-ancestors 'none'/, 'no framing (CSP)')
  t.match(csp, /object-src 'none'/, 'no plugins')
  t.notMatch(csp, /unsafe-inline|unsafe-eval/, 'no inline script')
  t.equal(page.headers['x-frame-options'], 'DENY', 'no framing (old browsers)')
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.equal(page.headers['referrer-policy'], 'no-referrer')
  t.match(page.headers['strict-transport-security'], /max-age=\d+/)
  const headers = await signedIn(box)
  const tail = await openTail(box, headers.cookie)
  tail.close()
  t.equal(tail.status, 200, 'the log tail opens')

  const big = await call(`${box.origin}/api/login`, { method: 'POST', rawBody: JSON.stringify({ password: 'x'.repeat(64 * 1024) }) })
  t.equal(big.status, 413, 'a 64 KiB sign-in body is refused before it is parsed')
  t.match(JSON.parse(big.text), { error: { code: 'WEB_BODY_TOO_LARGE', message: /too large/ } })
  const huge = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, rawBody: JSON.stringify({ id: 'x', type: 'osbiz', config: { pad: 'x'.repeat(3 * 1024 * 1024) } }) })
  t.equal(huge.status, 413, 'a 3 MiB connector body is refused')
  const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`
  const nested = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, rawBody: `{"id":"x","type":"osbiz","config":{"host":"h","deep":${deep}}}` })
  t.equal(nested.status, 400, 'JSON nested 5,000 deep is refused')
  t.match(JSON.parse(nested.text), { error: { code: 'WEB_JSON_TOO_DEEP', message: /nested/ } })
  const arrays = await call(`${box.origin}/api/connectors/x`, { method: 'PUT', headers, rawBody: `{"type":"osbiz","config":{"users":${'['.repeat(100_000)}${']'.repeat(100_000)}}}` })
  t.equal(arrays.status, 400, 'and so are 100,000 nested arrays')
  t.equal((await call(`${box.origin}/api/status`, { method: 'GET', headers })).status, 200, 'the box still answers')
})

t.test('status reports the gateway\'s RSS and the box\'s memory use, to a signed-in admin only', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  t.equal((await call(`${box.origin}/api/status`, { method: 'GET' })).status, 401, 'without a session: 401')
  const headers = await signedIn(box)
  const { memory } = JSON.parse((await call(`${box.origin}/api/status`, { method: 'GET', headers })).text) as { memory: { rssBytes: number; systemUsedBytes: number; systemTotalBytes: number } }
  // The box runs in this test process: its RSS is this process's, give or take what changed since.
  t.ok(memory.rssBytes > 10e6 && memory.rssBytes <= process.memoryUsage.rss() * 2, `RSS ${memory.rssBytes} is this process's`)
  t.ok(memory.systemUsedBytes > memory.rssBytes && memory.systemUsedBytes < memory.systemTotalBytes, 'the box uses more than the gateway and less than all of it')
  t.equal(memory.systemTotalBytes, totalmem(), 'total memory is the machine\'s')
})
