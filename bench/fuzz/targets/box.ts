import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { adapterRegistry } from '../../../gateway/src/adapters/registry.js'
import { Gateway } from '../../../gateway/src/app.js'
import { parseGatewayConfig } from '../../../gateway/src/config/load.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { AdminAuth } from '../../../gateway/src/web/admin-auth.js'
import { ensureBoxCertificate } from '../../../gateway/src/web/box-certificate.js'
import { buildBoxWebServer } from '../../../gateway/src/web/box-web-server.js'
import { LogRing } from '../../../gateway/src/web/log-ring.js'
import { SetupCodeStore } from '../../../gateway/src/web/setup-code.js'
import { jsonRouteCases, jsonRouteRunner, sessionOf, type JsonRoute, type JsonRouteCase } from '../json-routes.js'
import type { FuzzSession, FuzzTarget } from '../runner.js'
import { serviceLog } from '../service-log.js'

// Every PBX address points at a closed port of loopback: a fuzzed connector never reaches a real PBX.
const OSBIZ = { host: '127.0.0.1', port: 1, applicationId: 'presence-gateway', username: 'cstauser', password: '', users: [{ extension: '201', name: 'Alice', email: 'alice@contoso.example' }] }
const BOX_ROUTES: readonly JsonRoute[] = [
  { method: 'POST', url: '/api/setup', seed: { password: 'a new admin password' } },
  { method: 'POST', url: '/api/login', seed: { password: 'not the password at all' } },
  { method: 'POST', url: '/api/logout', seed: {} },
  { method: 'PUT', url: '/api/connectors/{p}', seed: { type: 'osbiz', config: OSBIZ } },
  { method: 'POST', url: '/api/connectors/test', seed: { id: 'fz-1', type: 'osbiz', config: OSBIZ } },
  { method: 'POST', url: '/api/enrollment', seed: { code: 'AAAA-BBBB-CCCC-DDDD', relayUrl: 'https://127.0.0.1:1', caFingerprint: 'ab'.repeat(32) } },
  { method: 'POST', url: '/api/diagnostics', seed: {} },
  { method: 'POST', url: '/api/factory-reset', seed: { confirm: 'no' } },
]
/** The confirmed factory reset wipes the box (a feature, not input handling): fuzzed bodies never carry it. */
const withoutConfirmedReset = (text: string): boolean => !/RESET/.test(text)

export const boxHttpTarget: FuzzTarget<JsonRouteCase> = {
  name: 'box-http',
  what: 'JSON bodies of every POST/PUT route of the box\'s setup page (fastify inject): signed in with CSRF, without CSRF, anonymous, broken cookie',
  // Sign-in checks a password hash on purpose (scrypt, in the thread pool: the event loop stays free).
  caseLimitMs: 5000,
  arbitrary: () => jsonRouteCases(BOX_ROUTES, ['fz-1', 'fz-2'], { keepBody: withoutConfirmedReset }),
  open: async (): Promise<FuzzSession<JsonRouteCase>> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'fuzz-box-'))
    const log = serviceLog()
    const config = parseGatewayConfig({ relay: { url: 'mqtts://127.0.0.1:1' }, dataDir, web: { host: '127.0.0.1', port: 0 }, connectors: [] }, adapterRegistry)
    // The gateway's own lines (no relay, PBX links refused) are not the web server's: only the server's are checked.
    const gateway = new Gateway(config, { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters(), registry: adapterRegistry })
    await gateway.start()
    const certificate = await ensureBoxCertificate(dataDir)
    const password = 'fuzzing admin password'
    // The admin password as the first visit leaves it; the fuzzed /api/setup then meets a box that has one.
    const setupCode = await new SetupCodeStore(dataDir).ensure()
    await new AdminAuth({ dataDir, idleMs: 30 * 60_000 }, { clock: systemClock }).setInitialPassword(password, setupCode, '127.0.0.1')
    const { app, ready } = buildBoxWebServer({
      gateway, config, registry: adapterRegistry, logger: log.logger, clock: systemClock, logRing: new LogRing(), certificate, fileConnectorIds: new Set(), connectionTestTimeoutMs: 300,
    })
    await ready
    await app.ready()
    return {
      run: jsonRouteRunner({
        routes: BOX_ROUTES,
        inject: (options) => app.inject(options),
        signIn: async () => sessionOf(await app.inject({ method: 'POST', url: '/api/login', payload: { password }, remoteAddress: '198.51.100.9' }), 'box'),
        brokenCookie: 'box_session=%',
      }),
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
