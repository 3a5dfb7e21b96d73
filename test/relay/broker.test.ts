import t from 'tap'
import mqtt from 'mqtt'
import { Counters } from '#kernel/counters.js'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { hashSecret, verifySecret } from '../../cloud-relay/src/broker/secrets.js'
import { captureLogger } from '../helpers/capture-logger.js'

t.test('secrets hash and verify', async (t) => {
  const hash = await hashSecret('correct horse')
  t.ok(await verifySecret('correct horse', hash))
  t.notOk(await verifySecret('wrong horse', hash))
  t.notOk(await verifySecret('x', 'garbage'), 'a malformed stored hash never verifies')
})

t.test('embedded broker: authentication and per-gateway ACL', async (t) => {
  const counters = new Counters()
  const { logger, lines } = captureLogger()
  const gw1Hash = await hashSecret('gw1-password')
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: true }, {
    relayUsername: 'relay',
    relayPassword: 'relay-password',
    verifyGateway: async (id, password) => id === 'gw1' && (await verifySecret(password, gw1Hash)),
  }, { logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const url = `mqtt://127.0.0.1:${broker.port}`

  const refused = mqtt.connect(url, { clientId: 'gw1', username: 'gw1', password: 'nope', reconnectPeriod: 0 })
  const err = await new Promise<Error & { code?: number }>((resolve) => refused.once('error', resolve))
  t.equal(err.code, 4, 'wrong password: CONNACK 4 (bad user name or password)')
  refused.end(true)
  t.equal(counters.get('broker.auth_rejected'), 1)
  t.ok(lines().some((l) => l.msg.includes('broker refused a client')), 'a clear log line names the refusal')

  const spoof = mqtt.connect(url, { clientId: 'gw2', username: 'gw1', password: 'gw1-password', reconnectPeriod: 0 })
  const spoofErr = await new Promise<Error & { code?: number }>((resolve) => spoof.once('error', resolve))
  t.equal(spoofErr.code, 4, 'a client id other than the gateway id is refused')
  spoof.end(true)

  const relay = await mqtt.connectAsync(url, { clientId: 'relay-test', username: 'relay', password: 'relay-password', reconnectPeriod: 0 })
  t.teardown(() => relay.endAsync())
  await relay.subscribeAsync('pbxgw/v1/+/#', { qos: 1 })
  const received: string[] = []
  relay.on('message', (topic) => received.push(topic))

  const gw = await mqtt.connectAsync(url, { clientId: 'gw1', username: 'gw1', password: 'gw1-password', reconnectPeriod: 0 })
  t.teardown(() => gw.endAsync(true))
  const own = await gw.subscribeAsync('pbxgw/v1/gw1/cmd/#', { qos: 1 })
  t.equal(own[0]?.qos, 1, 'a gateway may subscribe to its own commands')
  await t.rejects(gw.subscribeAsync('pbxgw/v1/gw2/cmd/#', { qos: 1 }), /Subscribe error/, "subscribing to another gateway's commands is refused (SUBACK 0x80)")
  await t.rejects(gw.subscribeAsync('pbxgw/v1/+/#', { qos: 1 }), /Subscribe error/, 'wildcards across gateways are refused')
  t.ok(gw.connected, 'a refused subscription keeps the connection')

  await gw.publishAsync('pbxgw/v1/gw1/evt/endpoint', 'ok', { qos: 1 })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(received, ['pbxgw/v1/gw1/evt/endpoint'], 'publishing under its own root reaches the relay')
  // A refused publish makes aedes close the connection; what matters is that the relay never sees it.
  gw.publish('pbxgw/v1/gw2/evt/endpoint', 'spoofed', { qos: 0 })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(received, ['pbxgw/v1/gw1/evt/endpoint'], "publishing under another gateway's root never reaches the relay")
  t.ok(counters.get('broker.publish_denied') >= 1, 'the refusal is counted')
  t.ok(counters.get('broker.subscribe_denied') >= 2)
})

t.test('embedded broker: a gateway cannot publish commands', async (t) => {
  const counters = new Counters()
  const { logger } = captureLogger()
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: true }, { relayUsername: 'relay', relayPassword: 'r', verifyGateway: (id, pw) => id === 'gw1' && pw === 'gw1-password' }, { logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const url = `mqtt://127.0.0.1:${broker.port}`
  const relay = await mqtt.connectAsync(url, { clientId: 'relay-test', username: 'relay', password: 'r', reconnectPeriod: 0 })
  t.teardown(() => relay.endAsync())
  await relay.subscribeAsync('pbxgw/v1/#', { qos: 1 })
  const received: string[] = []
  relay.on('message', (topic) => received.push(topic))
  const gw = await mqtt.connectAsync(url, { clientId: 'gw1', username: 'gw1', password: 'gw1-password', reconnectPeriod: 0 })
  t.teardown(() => gw.endAsync(true))
  gw.publish('pbxgw/v1/gw1/cmd/setDnd', '{}', { qos: 0 })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(received, [], 'a command published by a gateway is dropped')
  t.equal(counters.get('broker.publish_denied'), 1)
})
