import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import mqtt from 'mqtt'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { Gateway } from '../../gateway/src/app.js'
import { parseGatewayConfig } from '../../gateway/src/config/load.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { createEnvelope, encodeEnvelope } from '../../gateway/protocol/codec.js'
import { topics } from '../../gateway/protocol/topics.js'
import { Stack } from '../../scripts/stack.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'

t.test('bad input on the MQTT side is logged, counted and dropped; nothing crashes', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'bad-input-'))
  const { logger, lines } = captureLogger('info')
  const stack = new Stack({ dataDir, logger, sync: { pollIntervalMs: 200 } })
  t.teardown(async () => {
    await stack.stop()
    await rm(dataDir, { recursive: true, force: true })
  })
  await stack.start()
  const relayCounters = stack.relayCounters
  await eventually(() => stack.relay?.engine.graphUserIds('contoso').length === 3, 'people mapped')

  await t.test('a gateway with the wrong broker password', async (t) => {
    const counters = new Counters()
    const good = stack.gatewayConfig()
    const config = parseGatewayConfig({ ...good, dataDir: join(dataDir, 'wrong-gw'), relay: { ...good.relay, password: 'not-the-password' }, connectors: [] }, adapterRegistry)
    const { logger: gwLogger, lines: gwLines } = captureLogger('info')
    const wrong = new Gateway(config, { logger: gwLogger, clock: systemClock, counters, registry: adapterRegistry })
    await wrong.start()
    t.teardown(() => wrong.stop())
    await eventually(() => counters.get('uplink.auth_rejected') > 0, 'the refusal to be counted')
    t.ok(gwLines().some((l) => l.level === 50 && /refused the gateway credentials: check gatewayId and password/.test(l.msg)), 'the log line says what to check')
    t.notOk(wrong.relayConnected, 'not connected')
    t.ok(relayCounters.get('broker.auth_rejected') > 0, 'the broker counted it too')
  })

  await t.test('invalid envelopes from an authenticated gateway are dropped by the relay', async (t) => {
    await stack.stopGateway()
    const gatewayId = stack.gatewayId
    const client = await mqtt.connectAsync(stack.brokerUrl, { clientId: gatewayId, username: gatewayId, password: stack.gatewayPassword, reconnectPeriod: 0 })
    t.teardown(() => client.endAsync())
    const valid = { connectorId: 'osbiz-main', endpointId: '201', state: 'busy', calls: 1, dnd: false, dndOwner: null, changedAt: Date.now(), cause: 'call.connected' } as const
    const before = relayCounters.get('relay.invalid_messages')
    const bad: Array<[string, string | Buffer]> = [
      [topics.endpoint(gatewayId), 'this is not json'],
      [topics.endpoint(gatewayId), JSON.stringify({ v: 1, id: 'x' })],
      [topics.endpoint(gatewayId), encodeEnvelope(createEnvelope('endpoint', { ...valid, state: 'talking' as 'busy' }, { gatewayId, seq: 9_000_000 }))],
      [topics.endpoint(gatewayId), encodeEnvelope(createEnvelope('endpoint', valid, { gatewayId: 'someone-else', seq: 9_000_001 }))],
      [topics.directory(gatewayId), encodeEnvelope(createEnvelope('endpoint', valid, { gatewayId, seq: 9_000_002 }))],
      [`${topics.root(gatewayId)}/evt/unknown`, '{}'],
    ]
    for (const [topic, payload] of bad) await client.publishAsync(topic, payload, { qos: 1 })
    await eventually(() => relayCounters.get('relay.invalid_messages') - before === bad.length, 'every invalid message to be counted')
    t.equal(relayCounters.get('relay.invalid.PROTO_JSON'), 1)
    t.equal(relayCounters.get('relay.invalid.PROTO_ENVELOPE'), 1)
    t.equal(relayCounters.get('relay.invalid.PROTO_DATA'), 1)
    t.equal(relayCounters.get('relay.invalid.PROTO_GATEWAY_MISMATCH'), 1)
    t.equal(relayCounters.get('relay.invalid.PROTO_TYPE'), 1)
    t.equal(relayCounters.get('relay.invalid.PROTO_TOPIC'), 1)
    t.ok(lines().filter((l) => l.msg === 'dropped an invalid message').every((l) => typeof l.code === 'string' && typeof l.reason === 'string'), 'each drop is logged with its code and reason')

    // Oversized: the broker refuses it before the relay sees it.
    const big = Buffer.alloc(1024 * 1024 + 10, 0x20)
    client.publish(topics.endpoint(gatewayId), big, { qos: 0 })
    await eventually(() => relayCounters.get('broker.publish_denied') > 0, 'the oversized publish to be refused')

    // The relay still works: a valid event after all that is processed.
    const fresh = await mqtt.connectAsync(stack.brokerUrl, { clientId: gatewayId, username: gatewayId, password: stack.gatewayPassword, reconnectPeriod: 0 })
    t.teardown(() => fresh.endAsync())
    await fresh.publishAsync(topics.endpoint(gatewayId), encodeEnvelope(createEnvelope('endpoint', valid, { gatewayId, seq: 9_000_100 })), { qos: 1 })
    const alice = stack.graph.findUser('alice@contoso.example')!
    await eventually(() => stack.graph.getSession(alice.id, stack.graphClient.clientId), 'the valid event to take effect')
    t.pass('a valid event after the invalid ones still takes effect')
  })

  await t.test('invalid commands reaching a gateway are dropped and counted', async (t) => {
    const gateway = await stack.startGateway()
    await eventually(() => gateway.relayConnected, 'the gateway to connect')
    const relayClient = await mqtt.connectAsync(stack.brokerUrl, { clientId: 'test-relay-2', username: 'relay', password: stack.relayPassword, reconnectPeriod: 0 })
    t.teardown(() => relayClient.endAsync())
    const before = stack.gatewayCounters.get('uplink.invalid_commands')
    await relayClient.publishAsync(topics.command(stack.gatewayId, 'setDnd'), 'garbage', { qos: 1 })
    await relayClient.publishAsync(topics.command(stack.gatewayId, 'setDnd'), encodeEnvelope(createEnvelope('cmd.setDnd', { connectorId: 'osbiz-main', endpointId: '', dnd: true, reason: 'x' }, { gatewayId: stack.gatewayId, seq: 1 })), { qos: 1 })
    await eventually(() => stack.gatewayCounters.get('uplink.invalid_commands') - before === 2, 'both invalid commands to be counted')
    // A valid command for a connector that does not exist gets an error result, not a crash.
    const result = new Promise<string>((resolve) => {
      relayClient.on('message', (_topic, payload) => resolve(payload.toString()))
    })
    await relayClient.subscribeAsync(`${topics.root(stack.gatewayId)}/res/+`, { qos: 1 })
    await relayClient.publishAsync(topics.command(stack.gatewayId, 'setDnd'), encodeEnvelope(createEnvelope('cmd.setDnd', { connectorId: 'no-such-pbx', endpointId: '201', dnd: true, reason: 'test' }, { gatewayId: stack.gatewayId, seq: 2 ** 40 })), { qos: 1 })
    t.match(JSON.parse(await result), { type: 'result', data: { ok: false, error: { code: 'GW_UNKNOWN_CONNECTOR' } } })
  })
})
