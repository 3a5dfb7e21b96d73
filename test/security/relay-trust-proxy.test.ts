/**
 * Behind a reverse proxy every request comes from the proxy. `http.trustProxy` says which proxies' X-Forwarded-For
 * the relay believes; the per-address limiters then key on the client's address. Without it, X-Forwarded-For is
 * ignored (anyone can send that header). The real Relay over a real port; enrollment's per-address limiter.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Relay } from '../../cloud-relay/src/app.js'
import { ConfigError, parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import type { TapTest } from '../helpers/tap-types.js'

const base = (dir: string, http: Record<string, unknown>) => ({
  logLevel: 'silent',
  broker: { port: 0, host: '127.0.0.1', relayPassword: 'relay-secret', passwordListener: true },
  database: { pgliteDir: join(dir, 'pglite') },
  secrets: { sealKeyFile: join(dir, 'seal.key') },
  http: { host: '127.0.0.1', port: 0, ...http },
  tenants: [{ id: 'contoso', name: 'Contoso' }],
})

t.test('config: trustProxy takes false, true, a hop count or proxy addresses and CIDRs; anything else is refused in words', async (t) => {
  const dir = '/nonexistent'
  t.equal(parseRelayConfig(base(dir, {})).http.trustProxy, false, 'off by default')
  for (const value of [true, false, 1, ['127.0.0.1'], ['10.0.0.0/8', '::1', 'fd00::/8'], ['loopback', 'uniquelocal']]) {
    t.same(parseRelayConfig(base(dir, { trustProxy: value })).http.trustProxy, value, `accepts ${JSON.stringify(value)}`)
  }
  for (const value of [0, -1, 'yes', ['*'], ['10.0.0.0/99'], ['proxy.example.com'], []]) {
    t.throws(() => parseRelayConfig(base(dir, { trustProxy: value })), ConfigError, `refuses ${JSON.stringify(value)}`)
  }
  try {
    parseRelayConfig(base(dir, { trustProxy: ['proxy.example.com'] }))
  } catch (err) {
    t.match((err as Error).message, /trustProxy/, 'the message names the field')
  }
})

async function startRelay(t: TapTest, http: Record<string, unknown>) {
  const dir = await mkdtemp(join(tmpdir(), 'relay-proxy-'))
  const { logger, lines } = captureLogger('info')
  const relay = new Relay(parseRelayConfig(base(dir, http)), { logger, clock: systemClock, counters: new Counters() })
  await relay.start()
  t.teardown(async () => {
    await relay.stop()
    await rm(dir, { recursive: true, force: true })
  })
  const enroll = async (forwardedFor: string, i: number) => {
    const res = await fetch(`http://127.0.0.1:${relay.httpPort}/enroll/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor },
      body: JSON.stringify({ code: `ZZZZ-ZZZZ-ZZZZ-Z${String(i).padStart(3, '0')}`, csrPem: 'x' }),
    })
    return { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code }
  }
  return { relay, enroll, lines }
}

t.test('trustProxy off: X-Forwarded-For does not change the limiter\'s key', async (t) => {
  const { enroll, lines } = await startRelay(t, {})
  for (let i = 0; i < 10; i++) t.equal((await enroll('198.51.100.1', i)).code, 'ENROLL_CODE_UNKNOWN')
  const other = await enroll('198.51.100.2', 10)
  t.same(other, { status: 429, code: 'ENROLL_RATE_LIMITED' }, 'another forwarded address is the same client: the socket\'s')
  const logged = lines().filter((l) => l.msg === 'enrollment request rejected').map((l) => l['remoteAddress'])
  t.ok(logged.length > 0 && logged.every((a) => a === '127.0.0.1'), 'the log names the socket address, not the header')
})

t.test('trustProxy set to the loopback proxy: two forwarded clients get separate limits', async (t) => {
  const { enroll, lines } = await startRelay(t, { trustProxy: ['127.0.0.1', '::1'] })
  for (let i = 0; i < 10; i++) t.equal((await enroll('198.51.100.1', i)).code, 'ENROLL_CODE_UNKNOWN')
  t.same(await enroll('198.51.100.1', 10), { status: 429, code: 'ENROLL_RATE_LIMITED' }, 'the first client is limited')
  t.same(await enroll('198.51.100.2', 11), { status: 401, code: 'ENROLL_CODE_UNKNOWN' }, 'the second client is not')
  // A client cannot pick its own key by prepending addresses: the proxy's own entry (the rightmost) counts.
  t.same(await enroll('203.0.113.9, 198.51.100.1', 12), { status: 429, code: 'ENROLL_RATE_LIMITED' }, 'a spoofed first hop does not help')
  const logged = new Set(lines().filter((l) => l.msg === 'enrollment request rejected').map((l) => l['remoteAddress']))
  t.ok(logged.has('198.51.100.1') && logged.has('198.51.100.2'), 'the log names the clients, not the proxy')
})
