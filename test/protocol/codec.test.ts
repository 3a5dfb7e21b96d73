import t from 'tap'
import { createEnvelope, decodeMessage, encodeEnvelope, validateData } from '../../gateway/protocol/codec.js'
import { parseTopic, topics } from '../../gateway/protocol/topics.js'
import { MAX_PAYLOAD_BYTES } from '../../gateway/protocol/version.js'

const endpoint = { connectorId: 'osbiz', endpointId: '201', state: 'busy', calls: 1, dnd: false, dndOwner: null, changedAt: 1, cause: 'call.connected' } as const

t.test('topics round-trip through the parser', async (t) => {
  t.same(parseTopic(topics.status('gw1')), { gatewayId: 'gw1', kind: 'status' })
  t.same(parseTopic(topics.link('gw1', 'osbiz')), { gatewayId: 'gw1', kind: 'link', connectorId: 'osbiz' })
  t.same(parseTopic(topics.endpoint('gw1')), { gatewayId: 'gw1', kind: 'endpoint' })
  t.same(parseTopic(topics.directory('gw1')), { gatewayId: 'gw1', kind: 'directory' })
  t.same(parseTopic(topics.telemetry('gw1')), { gatewayId: 'gw1', kind: 'telemetry' })
  t.same(parseTopic(topics.result('gw1', 'abc-1')), { gatewayId: 'gw1', kind: 'result', correlationId: 'abc-1' })
  t.same(parseTopic(topics.command('gw1', 'setDnd')), { gatewayId: 'gw1', kind: 'command', name: 'setDnd' })
  for (const bad of ['pbxgw/v2/gw1/status', 'pbxgw/v1/gw1', 'pbxgw/v1/+/status', 'pbxgw/v1/gw1/cmd/reboot', 'pbxgw/v1/gw1/evt/other', 'pbxgw/v1/gw1/status/extra', 'other/v1/gw1/status']) {
    t.equal(parseTopic(bad), undefined, `rejects ${bad}`)
  }
})

t.test('a valid message decodes', async (t) => {
  const envelope = createEnvelope('endpoint', endpoint, { gatewayId: 'gw1', seq: 7 })
  const decoded = decodeMessage(topics.endpoint('gw1'), encodeEnvelope(envelope))
  t.ok(decoded.ok)
  if (decoded.ok) t.same(decoded.envelope, envelope)
})

t.test('every failure is a code and a reason, never a throw', async (t) => {
  const good = createEnvelope('endpoint', endpoint, { gatewayId: 'gw1', seq: 7 })
  const cases: Array<[string, string, Uint8Array | string]> = [
    ['PROTO_TOPIC', 'pbxgw/v1/gw1/nonsense', encodeEnvelope(good)],
    ['PROTO_TOO_LARGE', topics.endpoint('gw1'), Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20)],
    ['PROTO_JSON', topics.endpoint('gw1'), '{not json'],
    ['PROTO_ENVELOPE', topics.endpoint('gw1'), JSON.stringify({ ...good, seq: -1 })],
    ['PROTO_ENVELOPE', topics.endpoint('gw1'), JSON.stringify({ ...good, extra: true })],
    ['PROTO_ENVELOPE', topics.endpoint('gw1'), JSON.stringify([1, 2])],
    ['PROTO_TYPE', topics.endpoint('gw1'), JSON.stringify({ ...good, type: 'status' })],
    ['PROTO_DATA', topics.endpoint('gw1'), JSON.stringify({ ...good, data: { ...endpoint, state: 'talking' } })],
    ['PROTO_DATA', topics.endpoint('gw1'), JSON.stringify({ ...good, data: { ...endpoint, dndOwner: 'someone' } })],
    ['PROTO_GATEWAY_MISMATCH', topics.endpoint('gw2'), encodeEnvelope(good)],
    ['PROTO_TYPE', topics.command('gw1', 'resync'), encodeEnvelope(createEnvelope('cmd.setDnd', { connectorId: 'c', endpointId: '1', dnd: true, reason: 'x' }, { gatewayId: 'gw1', seq: 1 }))],
  ]
  for (const [code, topic, payload] of cases) {
    const result = decodeMessage(topic, typeof payload === 'string' ? Buffer.from(payload) : payload)
    t.equal(result.ok, false, `${code} rejected`)
    if (!result.ok) {
      t.equal(result.code, code)
      t.ok(result.reason.length > 0, 'with a reason')
    }
  }
})

t.test('validateData guards outgoing messages', async (t) => {
  t.equal(validateData('endpoint', endpoint), undefined)
  t.match(validateData('endpoint', { ...endpoint, calls: -1 }), /calls/)
})
