/**
 * The embedded broker's plaintext password listener: off unless asked for, on loopback only (a remote address
 * needs an explicit allowRemote), passwords hashed with scrypt off the event loop, failed attempts throttled per
 * client address.
 */
import { networkInterfaces } from 'node:os'
import t from 'tap'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { hashSecret, verifySecret } from '../../cloud-relay/src/broker/secrets.js'
import { parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { closedPort } from '../helpers/free-port.js'
import { tryConnect } from '../broker/fixtures/clients.js'
import { testPki } from '../broker/fixtures/pki.js'

/** A non-loopback IPv4 address of this machine, to check what a LAN neighbour would reach. */
function lanAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  return undefined
}

t.test('off by default: a relay config without passwordListener opens no plaintext listener', async (t) => {
  const config = parseRelayConfig({ broker: { relayPassword: 'relay-secret', tls: { port: 0 } } })
  t.notOk(config.broker.passwordListener, 'broker.passwordListener defaults to off')
  const { pki, server } = await testPki('password-default')
  const port = await closedPort()
  const { logger } = captureLogger()
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port, passwordListener: config.broker.passwordListener, tls: { port: 0, caPem: pki.caCertPem, certPem: server.certPem, keyPem: server.keyPem } }, {
    relayUsername: 'relay', relayPassword: 'relay-secret',
  }, { logger, counters: new Counters() })
  await broker.start()
  t.teardown(() => broker.stop())
  const outcome = await tryConnect(`mqtt://127.0.0.1:${port}`, { clientId: 'relay', username: 'relay', password: 'relay-secret' })
  t.not(outcome.kind, 'connected', 'nothing answers MQTT on the password port')
})

t.test('loopback only when on; a remote address only with allowRemote, and a warning', async (t) => {
  const { logger, lines } = captureLogger()
  const remote = new EmbeddedBroker({ host: '0.0.0.0', port: 0, passwordListener: { host: '0.0.0.0' } }, { relayUsername: 'relay', relayPassword: 'r' }, { logger, counters: new Counters() })
  await t.rejects(remote.start(), /loopback.*allowRemote/s, 'a non-loopback password listener is refused at start, saying how to allow it')
  await remote.stop()

  const plain = new EmbeddedBroker({ host: '0.0.0.0', port: 0, passwordListener: true }, { relayUsername: 'relay', relayPassword: 'r' }, { logger, counters: new Counters() })
  await plain.start()
  t.teardown(() => plain.stop())
  const lan = lanAddress()
  if (lan !== undefined) {
    const fromLan = await tryConnect(`mqtt://${lan}:${plain.port}`, { clientId: 'relay', username: 'relay', password: 'r', connectTimeout: 2000 })
    t.not(fromLan.kind, 'connected', `passwordListener: true listens on 127.0.0.1 only, even with broker.host 0.0.0.0 (not reachable at ${lan})`)
  }
  const local = await tryConnect(`mqtt://127.0.0.1:${plain.port}`, { clientId: 'relay', username: 'relay', password: 'r' })
  t.equal(local.kind, 'connected', 'it answers on loopback')
  if (local.kind === 'connected') await local.client.endAsync()

  const allowed = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: { host: '0.0.0.0', allowRemote: true } }, { relayUsername: 'relay', relayPassword: 'r' }, { logger, counters: new Counters() })
  await allowed.start()
  t.teardown(() => allowed.stop())
  t.ok(lines().some((l) => l.level === 40 && /plaintext password listener.*not loopback/i.test(l.msg)), 'allowRemote starts it with a warning')
})

t.test('password hashes: scrypt N >= 2^17 for new ones, old ones still verify, off the event loop', async (t) => {
  const hash = await hashSecret('correct horse battery')
  const [, n] = hash.split('$')
  t.ok(Number(n) >= 2 ** 17, `new hashes use N=${n}`)
  const verifying = verifySecret('correct horse battery', hash)
  t.ok(verifying instanceof Promise, 'verification is asynchronous')
  t.equal(await verifying, true)
  t.equal(await verifySecret('wrong', hash), false)
  // A hash written by the previous version (N=16384) keeps working.
  const { scryptSync } = await import('node:crypto')
  const salt = Buffer.from('salt-of-an-old-hash')
  const oldHash = `scrypt$16384$8$1$${salt.toString('base64')}$${scryptSync('old-password', salt, 32, { N: 16384, r: 8, p: 1 }).toString('base64')}`
  t.equal(await verifySecret('old-password', oldHash), true, 'a hash with the old parameters verifies with its stored parameters')
  t.equal(await verifySecret('x', 'scrypt$999999999999$8$1$AAAA$AAAA'), false, 'absurd stored parameters are refused, not computed')
})

t.test('failed attempts are throttled per client address', async (t) => {
  const { logger, lines } = captureLogger()
  const counters = new Counters()
  const hash = await hashSecret('gw1-password')
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: true }, {
    relayUsername: 'relay', relayPassword: 'relay-password',
    verifyGateway: (id: string, password: string) => (id === 'gw1' ? verifySecret(password, hash) : false),
  }, { logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const url = `mqtt://127.0.0.1:${broker.port}`
  for (let i = 0; i < 12; i++) {
    const wrong = await tryConnect(url, { clientId: 'gw1', username: 'gw1', password: `guess-${i}` })
    t.not(wrong.kind, 'connected', `guess ${i} refused`)
  }
  const right = await tryConnect(url, { clientId: 'gw1', username: 'gw1', password: 'gw1-password' })
  t.not(right.kind, 'connected', 'after 10 failures from this address even the right password is refused for a while')
  const relay = await tryConnect(url, { clientId: 'relay', username: 'relay', password: 'relay-password' })
  t.not(relay.kind, 'connected', 'the relay\'s own login from the same address too')
  t.ok(lines().some((l) => l.msg === 'broker refused a client' && /too many failed/i.test(String(l.why)) && l.remote === '127.0.0.1'), 'the refusal says why, with the address')
  t.ok(counters.get('broker.auth_rejected.throttled') >= 2, 'and is counted')
})
