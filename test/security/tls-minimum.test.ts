// The relay's HTTPS port (enrollment, console, webhook) and the box's setup page refuse TLS below 1.2 even when
// the process's defaults were lowered (NODE_OPTIONS=--tls-min-v1.0, an OpenSSL config with SECLEVEL=0), as
// their broker listeners already do: each server states its own minimum instead of trusting Node's defaults.
import tls from 'node:tls'
import t from 'tap'
import { startBox } from '../box-ui/fixtures/box-harness.js'
import { httpsRelay, relaySide } from '../enrollment/fixtures/enrollment-world.js'
import type { TapTest } from '../helpers/tap-types.js'

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

/** The server on `port` agrees no TLS 1.0/1.1 session, and a current client still connects. */
async function refusesOldTls(t: TapTest, port: number): Promise<void> {
  const old = await oldClient(port)
  t.equal(old.protocol, undefined, `no TLS 1.0/1.1 session was agreed (got ${old.protocol ?? old.error})`)
  t.ok(old.error, 'the handshake failed')
  t.match(await modernClient(port), /^TLSv1\.[23]$/, 'a current client still connects')
}

t.test('the relay\'s HTTPS port refuses TLS 1.0 and 1.1', async (t) => {
  // The relay's own HTTP server (buildServer) with HTTPS from its CA, as enrollment, the console and the webhook use it.
  const side = await relaySide('pglite')
  t.teardown(() => side.close())
  const relay = await httpsRelay(side)
  t.teardown(() => relay.close())
  await refusesOldTls(t, Number(new URL(relay.url).port))
})

t.test('the box\'s setup page refuses TLS 1.0 and 1.1', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  await refusesOldTls(t, Number(new URL(box.url).port))
})
