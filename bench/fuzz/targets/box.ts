import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import pino from 'pino'
import { adapterRegistry } from '../../../gateway/src/adapters/registry.js'
import { Gateway } from '../../../gateway/src/app.js'
import { parseGatewayConfig } from '../../../gateway/src/config/load.js'
import { systemClock } from '../../../gateway/src/core/clock.js'
import { Counters } from '../../../gateway/src/core/counters.js'
import { AdminAuth } from '../../../gateway/src/web/admin-auth.js'
import { ensureBoxCertificate } from '../../../gateway/src/web/box-certificate.js'
import { buildBoxWebServer } from '../../../gateway/src/web/box-web-server.js'
import { LogRing } from '../../../gateway/src/web/log-ring.js'
import { mutatedJson, mutatedValue } from '../mutate.js'
import type { FuzzSession, FuzzTarget } from '../runner.js'
import { serviceLog } from '../service-log.js'

interface BoxRoute { method: 'POST' | 'PUT'; url: string; seed: unknown }

// Every PBX address points at a closed port of loopback: a fuzzed connector never reaches a real PBX.
const OSBIZ = { host: '127.0.0.1', port: 1, applicationId: 'presence-gateway', username: 'cstauser', password: '', users: [{ extension: '201', name: 'Alice', email: 'alice@contoso.example' }] }
const BOX_ROUTES: readonly BoxRoute[] = [
  { method: 'POST', url: '/api/setup', seed: { password: 'a new admin password' } },
  { method: 'POST', url: '/api/login', seed: { password: 'not the password at all' } },
  { method: 'POST', url: '/api/logout', seed: {} },
  { method: 'PUT', url: '/api/connectors/{p}', seed: { type: 'osbiz', config: OSBIZ } },
  { method: 'POST', url: '/api/connectors/test', seed: { id: 'fz-1', type: 'osbiz', config: OSBIZ } },
  { method: 'POST', url: '/api/enrollment', seed: { code: 'AAAA-BBBB-CCCC-DDDD', relayUrl: 'https://127.0.0.1:1', caFingerprint: 'ab'.repeat(32) } },
  { method: 'POST', url: '/api/diagnostics', seed: {} },
  { method: 'POST', url: '/api/factory-reset', seed: { confirm: 'no' } },
]
const PATH_VALUES = ['fz-1', 'fz-2', '__proto__', 'constructor', '%00', 'x'.repeat(300), '%F0%9F%98%80', '.']

type BoxAuthMode = 'session' | 'session-without-csrf' | 'anonymous' | 'broken-cookie'
interface BoxCase { route: number; path: string; auth: BoxAuthMode; body: unknown; raw: string | undefined; contentType: string }

/** The confirmed factory reset wipes the box (a feature, not input handling): fuzzed bodies never carry it. */
function withoutConfirmedReset(body: unknown): unknown {
  return typeof body === 'object' && body !== null && (body as { confirm?: unknown }).confirm === 'RESET' ? { ...body, confirm: 'RESET?' } : body
}

export const boxHttpTarget: FuzzTarget<BoxCase> = {
  name: 'box-http',
  what: 'JSON bodies of every POST/PUT route of the box\'s setup page (fastify inject): signed in with CSRF, without CSRF, anonymous',
  // Sign-in checks a password hash on purpose (scrypt, in the thread pool: the event loop stays free).
  caseLimitMs: 5000,
  arbitrary: () => fc.integer({ min: 0, max: BOX_ROUTES.length - 1 }).chain((route) => fc.record({
    route: fc.constant(route),
    path: fc.oneof({ weight: 4, arbitrary: fc.constantFrom('fz-1', 'fz-2') }, { weight: 1, arbitrary: fc.constantFrom(...PATH_VALUES) }),
    auth: fc.constantFrom<BoxAuthMode>('session', 'session', 'session', 'session', 'session-without-csrf', 'anonymous', 'anonymous', 'broken-cookie'),
    body: mutatedValue(fc.constant(BOX_ROUTES[route]!.seed)).map(withoutConfirmedReset),
    raw: fc.option(mutatedJson(fc.constant(BOX_ROUTES[route]!.seed)).filter((text) => !/RESET/.test(text)), { freq: 4, nil: undefined }),
    contentType: fc.constantFrom('application/json', 'application/json', 'application/json', 'text/plain'),
  })),
  open: async (): Promise<FuzzSession<BoxCase>> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'fuzz-box-'))
    const log = serviceLog()
    const config = parseGatewayConfig({ relay: { url: 'mqtts://127.0.0.1:1' }, dataDir, web: { host: '127.0.0.1', port: 0 }, connectors: [] }, adapterRegistry)
    // The gateway's own lines (no relay, PBX links refused) are not the web server's: only the server's are checked.
    const gateway = new Gateway(config, { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters(), registry: adapterRegistry })
    await gateway.start()
    const certificate = await ensureBoxCertificate(dataDir)
    const password = 'fuzzing admin password'
    // The admin password as the first visit leaves it; the fuzzed /api/setup then meets a box that has one.
    await new AdminAuth({ dataDir, idleMs: 30 * 60_000 }, { clock: systemClock }).setInitialPassword(password)
    const { app, ready } = buildBoxWebServer({
      gateway, config, registry: adapterRegistry, logger: log.logger, clock: systemClock, logRing: new LogRing(), certificate, fileConnectorIds: new Set(), connectionTestTimeoutMs: 300,
    })
    await ready
    await app.ready()
    let session: { cookie: string; csrf: string } | undefined
    const signIn = async (): Promise<{ cookie: string; csrf: string }> => {
      const response = await app.inject({ method: 'POST', url: '/api/login', payload: { password }, remoteAddress: '198.51.100.9' })
      if (response.statusCode !== 200) throw new Error(`box sign-in failed: ${response.statusCode} ${response.body}`)
      const setCookie = response.headers['set-cookie']
      const cookie = (Array.isArray(setCookie) ? setCookie[0] : setCookie)?.split(';')[0]
      if (!cookie) throw new Error('box sign-in set no cookie')
      return { cookie, csrf: (JSON.parse(response.body) as { csrfToken: string }).csrfToken }
    }
    return {
      async run(input) {
        const route = BOX_ROUTES[input.route]!
        const headers: Record<string, string> = { 'content-type': input.contentType }
        // Signing our own session out would cost a password hash for the next case: logout is fuzzed signed out.
        const auth = route.url.endsWith('/logout') && input.auth.startsWith('session') ? 'anonymous' : input.auth
        if (auth === 'session' || auth === 'session-without-csrf') {
          session ??= await signIn()
          headers.cookie = session.cookie
          if (auth === 'session') headers['x-csrf-token'] = session.csrf
        } else if (auth === 'broken-cookie') headers.cookie = 'box_session=%'
        const response = await app.inject({
          method: route.method, url: route.url.replace('{p}', input.path), headers, remoteAddress: '203.0.113.1',
          payload: input.raw ?? (JSON.stringify(input.body) ?? 'null'),
        })
        if (response.statusCode === 401 && headers.cookie === session?.cookie) session = undefined
        if (response.statusCode >= 500) throw new Error(`HTTP ${response.statusCode}: ${response.body.slice(0, 500)}`)
        let code = ''
        try {
          const parsed = JSON.parse(response.body) as { error?: { code?: string } }
          if (parsed.error?.code) code = ` ${parsed.error.code}`
        } catch {
          // not JSON
        }
        return `${route.method} ${route.url.replace('{p}', ':p')} ${auth}: ${response.statusCode}${code}`
      },
      async health() {
        const response = await app.inject({ method: 'GET', url: '/api/session' })
        return response.statusCode === 200
      },
      problems: () => log.takeErrors(),
      async close() {
        await app.close()
        await gateway.stop()
        await rm(dataDir, { recursive: true, force: true })
      },
    }
  },
}
