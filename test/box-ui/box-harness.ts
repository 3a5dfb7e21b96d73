import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { Gateway } from '../../gateway/src/app.js'
import { parseGatewayConfig } from '../../gateway/src/config/load.js'
import { systemClock } from '../../gateway/src/core/clock.js'
import { Counters } from '../../gateway/src/core/counters.js'
import { ensureBoxCertificate } from '../../gateway/src/web/box-certificate.js'
import { BoxWebServer } from '../../gateway/src/web/box-web-server.js'
import { LogRing } from '../../gateway/src/web/log-ring.js'
import { buildWeb, type WebBuildReport } from '../../scripts/build-web.js'

export interface BoxUnderTest {
  url: string
  origin: string
  dataDir: string
  gateway: Gateway
  logRing: LogRing
  fingerprint: string
  close(): Promise<void>
}

let built: Promise<WebBuildReport[]> | undefined
/** Builds the web apps once per test process into dist/web-test-box-ui. */
export function buildOnce(): Promise<WebBuildReport[]> {
  built ??= buildWeb(join('dist', 'web-test-box-ui'))
  return built
}

/**
 * A box as it is on first boot: a gateway with no connectors and no identity (gatewayId left out), its setup page
 * on a free port of 127.0.0.1. Logs go to the ring only (the live tail), so test output stays readable.
 */
export async function startBox(options: { connectionTestTimeoutMs?: number } = {}): Promise<BoxUnderTest> {
  await buildOnce()
  const dataDir = await mkdtemp(join(tmpdir(), 'box-ui-'))
  const logRing = new LogRing()
  const logger = pino({ level: 'info', redact: ['password', '*.password'] }, logRing.stream())
  const config = parseGatewayConfig({
    relay: { url: 'mqtts://127.0.0.1:1' }, // nothing listens there: the box is not enrolled yet
    dataDir,
    web: { host: '127.0.0.1', port: 0, staticDir: join('dist', 'web-test-box-ui', 'box') },
    connectors: [],
  }, adapterRegistry)
  const gateway = new Gateway(config, { logger, clock: systemClock, counters: new Counters(), registry: adapterRegistry })
  await gateway.start()
  const certificate = await ensureBoxCertificate(dataDir)
  const web = new BoxWebServer({
    gateway, config, registry: adapterRegistry, logger, clock: systemClock, logRing, certificate, fileConnectorIds: new Set(),
    ...(options.connectionTestTimeoutMs ? { connectionTestTimeoutMs: options.connectionTestTimeoutMs } : {}),
  })
  const { port } = await web.start()
  return {
    url: `https://127.0.0.1:${port}/`,
    origin: `https://127.0.0.1:${port}`,
    dataDir,
    gateway,
    logRing,
    fingerprint: certificate.fingerprint256,
    async close() {
      await web.stop()
      await gateway.stop()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

export const PHONE = { width: 390, height: 844 }
export const DESKTOP = { width: 1280, height: 800 }
