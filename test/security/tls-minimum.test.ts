// The relay's HTTPS port (enrollment, console, webhook) and the box's setup page refuse TLS below 1.2 even when
// the process's defaults were lowered (NODE_OPTIONS=--tls-min-v1.0, an OpenSSL config with SECLEVEL=0), as
// their broker listeners already do: each server states its own minimum instead of trusting Node's defaults.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import pino from 'pino'
import t from 'tap'
import { Relay } from '../../cloud-relay/src/app.js'
import { parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { systemClock } from '../../gateway/src/core/clock.js'
import { Counters } from '../../gateway/src/core/counters.js'
import { startBox } from '../box-ui/fixtures/box-harness.js'
import { API_TOKEN } from '../enrollment/fixtures/enrollment-world.js'

// What an operator's lowered defaults look like to every TLS server in this process that does not set its own.
tls.DEFAULT_MIN_VERSION = 'TLSv1'
tls.DEFAULT_CIPHERS = 'DEFAULT@SECLEVEL=0'

/** Tries a handshake offering only TLS 1.0/1.1; resolves with the protocol agreed or the error code. */
function oldClient(port: number): Promise<{ protocol?: string | null; error?: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, () => {
      const protocol = socket.getProtocol()
      socket.destroy()
      resolve({ protocol })
    })
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }))
  })
}

function modernClient(port: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const protocol = socket.getProtocol()
      socket.destroy()
      resolve(protocol)
    })
    socket.on('error', reject)
  })
}

t.test('the relay\'s HTTPS port refuses TLS 1.0 and 1.1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tls-min-relay-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const config = parseRelayConfig({
    logLevel: 'silent',
    broker: { port: 0, host: '127.0.0.1', relayPassword: 'relay-secret', passwordListener: true },
    database: { pgliteDir: join(dir, 'pglite') },
    secrets: { sealKeyFile: join(dir, 'seal.key') },
    http: { host: '127.0.0.1', port: 0, apiToken: API_TOKEN, tls: { selfIssued: true } },
    enrollment: { brokerUrls: ['mqtts://127.0.0.1:8883'], publicHostnames: ['127.0.0.1'] },
    tenants: [{ id: 'contoso', name: 'Contoso' }],
  })
  const relay = new Relay(config, { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters() })
  await relay.start()
  t.teardown(() => relay.stop())
  const port = relay.httpPort
  if (port === undefined) throw new Error('the relay did not open its HTTPS port')
  const old = await oldClient(port)
  t.equal(old.protocol, undefined, `no TLS 1.0/1.1 session was agreed (got ${old.protocol ?? old.error})`)
  t.ok(old.error, 'the handshake failed')
  t.match(await modernClient(port), /^TLSv1\.[23]$/, 'a current client still connects')
})

t.test('the box\'s setup page refuses TLS 1.0 and 1.1', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const port = Number(new URL(box.url).port)
  const old = await oldClient(port)
  t.equal(old.protocol, undefined, `no TLS 1.0/1.1 session was agreed (got ${old.protocol ?? old.error})`)
  t.ok(old.error, 'the handshake failed')
  t.match(await modernClient(port), /^TLSv1\.[23]$/, 'a current client still connects')
})
