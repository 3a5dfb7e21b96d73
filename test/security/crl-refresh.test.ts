/**
 * Mosquitto refuses every handshake once its CRL is past nextUpdate. The relay rewrites the CRL on a schedule (at
 * start and daily, 30 days ahead) and reloads Mosquitto, so a quiet month without revocations changes nothing.
 * The relay's clock is moved forward here; Mosquitto runs on the real clock.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { writeMosquittoConfig, type MosquittoConfigOptions } from '../../cloud-relay/src/broker/mosquitto-config.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { closedPort } from '../helpers/free-port.js'
import { ManualClock } from '../enrollment/fixtures/enrollment-world.js'
import { certOptions, tryConnect } from '../broker/fixtures/clients.js'
import { startMosquitto } from '../broker/fixtures/mosquitto.js'
import { testPki } from '../broker/fixtures/pki.js'

const DAY = 86_400_000

t.test('the CRL is rewritten before it expires, and Mosquitto keeps taking boxes after a quiet month', async (t) => {
  const { pki, client } = await testPki('crl-refresh')
  const { readCrlDates } = await import('../../cloud-relay/src/pki/relay-pki.js')
  const { MosquittoCrlRefresh } = await import('../../cloud-relay/src/broker/crl-refresh.js')
  const dir = await mkdtemp(join(tmpdir(), 'mosq-crl-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await closedPort()
  const pidFile = join(dir, 'mosquitto.pid')
  const options: MosquittoConfigOptions = { configDir: dir, host: '127.0.0.1', port, pidFile, ...(process.getuid?.() === 0 ? { user: 'root' } : {}) }
  // The relay last wrote the CRL a little over 30 days ago, and nothing has happened since.
  const realNow = Date.now()
  const clock = new ManualClock(realNow - 30 * DAY - 12 * 3600_000)
  const files = await writeMosquittoConfig(options, { pki, revoked: { certificates: [], gateways: [] }, now: clock.now() })
  const mosquitto = await startMosquitto(files.confFile, port)
  t.teardown(() => mosquitto.stop())
  const url = `mqtts://127.0.0.1:${port}`
  const box = await client('gw1')
  const stale = await tryConnect(url, certOptions(pki.caCertPem, box, 'gw1'))
  t.not(stale.kind, 'connected', 'with a CRL past its nextUpdate, Mosquitto refuses a good box (the failure this guards against)')
  if (stale.kind === 'connected') await stale.client.endAsync()

  const { logger, lines } = captureLogger()
  const refresh = new MosquittoCrlRefresh({ configDir: dir, pidFile }, { pki, clock, logger, counters: new Counters(), revokedCertificates: () => [] })
  await refresh.start()
  t.teardown(() => refresh.stop())
  let previous = await readCrlDates(await readFile(files.crlFile, 'utf8'))
  t.equal(previous.thisUpdate.getTime() <= clock.now(), true, 'written at start')
  for (let day = 1; day <= 30; day++) {
    clock.advance(DAY)
    await refresh.idle()
    const current = await readCrlDates(await readFile(files.crlFile, 'utf8'))
    if (current.nextUpdate.getTime() <= previous.nextUpdate.getTime()) {
      t.fail(`day ${day}: the CRL was not rewritten with a later nextUpdate (${current.nextUpdate.toISOString()})`)
      break
    }
    if (previous.nextUpdate.getTime() <= clock.now()) {
      t.fail(`day ${day}: the old CRL had already expired (${previous.nextUpdate.toISOString()}) when it was rewritten`)
      break
    }
    previous = current
  }
  t.ok(previous.nextUpdate.getTime() - clock.now() >= 29 * DAY, 'after a month of days the CRL still reaches about 30 days ahead')
  t.ok(lines().filter((l) => l.msg === 'Mosquitto CRL refreshed').length >= 31, 'each rewrite is logged')
  await eventually(() => (mosquitto.log().match(/Reloading config/g)?.length ?? 0) >= 1 || undefined, 'Mosquitto reloaded through the pid file')
  await eventually(async () => {
    const outcome = await tryConnect(url, certOptions(pki.caCertPem, box, 'gw1'))
    if (outcome.kind === 'connected') await outcome.client.endAsync()
    return outcome.kind === 'connected' || undefined
  }, 'the box to connect to the real Mosquitto after the clock jump')
  t.pass('the box connects to Mosquitto after the month')
})

t.test('a reload never reaches a Mosquitto that is still starting: the SIGHUP waits until its pid file has settled', async (t) => {
  // Mosquitto writes its pid file before it sets up its signal handlers; a SIGHUP then ends it silently. CI saw
  // Mosquitto exit right after "Opening ipv6 listen socket" when the relay's start-time CRL refresh met it.
  const { pki } = await testPki('crl-settle')
  const { refreshMosquittoCrl, PID_SETTLE_MS } = await import('../../cloud-relay/src/broker/mosquitto-config.js')
  const { stat } = await import('node:fs/promises')
  const dir = await mkdtemp(join(tmpdir(), 'mosq-settle-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await closedPort()
  const pidFile = join(dir, 'mosquitto.pid')
  const files = await writeMosquittoConfig({ configDir: dir, host: '127.0.0.1', port, pidFile, ...(process.getuid?.() === 0 ? { user: 'root' } : {}) }, { pki, revoked: { certificates: [], gateways: [] } })
  const mosquitto = await startMosquitto(files.confFile, port)
  t.teardown(() => mosquitto.stop())
  const written = (await stat(pidFile)).mtimeMs
  const { reloaded } = await refreshMosquittoCrl({ configDir: dir, pidFile, pki, certificates: [], now: Date.now() })
  t.ok(reloaded, 'Mosquitto was reloaded')
  t.ok(Date.now() - written >= PID_SETTLE_MS, 'not before its pid file was old enough for its signal handlers to be set up')
  await eventually(() => /Reloading config/.test(mosquitto.log()) || undefined, 'Mosquitto to log the reload')
  t.equal(mosquitto.process.exitCode, null, 'and it is still running')
  t.equal(mosquitto.process.signalCode, null)
})
