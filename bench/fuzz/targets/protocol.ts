import fc from 'fast-check'
import { createEnvelope, decodeMessage } from '../../../gateway/protocol/codec.js'
import type { AnyEnvelope } from '../../../gateway/protocol/schemas.js'
import { topics } from '../../../gateway/protocol/topics.js'
import { mutatedJson, mutatedText } from '../mutate.js'
import type { FuzzSession, FuzzTarget } from '../runner.js'

export interface MqttCase { topic: string; payload: Buffer }

const NOW = 1_780_000_000_000
const ENDPOINT = { connectorId: 'osbiz-main', endpointId: '201', state: 'busy', calls: 1, dnd: false, dndOwner: null, changedAt: NOW, cause: 'call.connected' } as const

/** One valid envelope per message type, on its own topic: what a gateway (or the relay) really publishes. */
export function contractSamples(gatewayId: string): Array<{ topic: string; envelope: AnyEnvelope }> {
  const header = { gatewayId, seq: 7, ts: NOW, id: '0b6c1f6e-8a4b-4c1e-9d7e-2f5a3c4b5d6e' }
  return [
    { topic: topics.status(gatewayId), envelope: createEnvelope('status', { state: 'online', version: '0.1.0', startedAt: NOW - 1000 }, header) },
    { topic: topics.link(gatewayId, 'osbiz-main'), envelope: createEnvelope('link', { connectorId: 'osbiz-main', pbxType: 'osbiz', state: 'connected', since: NOW, endpoints: 3 }, header) },
    { topic: topics.endpoint(gatewayId), envelope: createEnvelope('endpoint', ENDPOINT, header) },
    {
      topic: topics.directory(gatewayId),
      envelope: createEnvelope('directory', { connectorId: 'osbiz-main', entries: [{ endpointId: '201', name: 'Alice', email: 'alice@contoso.example' }, { endpointId: '202', name: 'Bob' }] }, header),
    },
    {
      topic: topics.telemetry(gatewayId),
      envelope: createEnvelope('telemetry', { uptimeS: 60, rssBytes: 50_000_000, eventsSent: 10, invalidCommands: 0, cpuPercent: 5, load1: 0.2, temperatureC: 48, version: '0.1.0', outboxRecords: 0 }, header),
    },
    { topic: topics.result(gatewayId, 'corr-1'), envelope: createEnvelope('result', { correlationId: 'corr-1', command: 'setDnd', ok: true, endpoint: ENDPOINT }, header) },
    { topic: topics.command(gatewayId, 'setDnd'), envelope: createEnvelope('cmd.setDnd', { connectorId: 'osbiz-main', endpointId: '201', dnd: true, reason: 'Teams InACall' }, header) },
    { topic: topics.command(gatewayId, 'resync'), envelope: createEnvelope('cmd.resync', { reason: 'relay restarted' }, header) },
    { topic: topics.command(gatewayId, 'ping'), envelope: createEnvelope('cmd.ping', { sentAt: NOW }, header) },
  ]
}

/**
 * Topic and payload: valid envelopes damaged (wrong types, huge numbers, prototype keys, deep nesting), sent on
 * their own topic, another contract topic, or a damaged topic.
 */
export function mqttCases(gatewayId: string, options: { asGateway?: boolean } = {}): fc.Arbitrary<MqttCase> {
  const samples = contractSamples(gatewayId)
  // A gateway may publish below its own root except cmd/ (the broker closes the connection otherwise): sent as a
  // gateway, the cases stay there, apart from a few that check the broker's refusal.
  const topicsOf = samples.map((s) => s.topic).filter((topic) => !options.asGateway || !topic.includes('/cmd/'))
  const sample = fc.constantFrom(...samples)
  const payload = (s: { envelope: AnyEnvelope }): fc.Arbitrary<string> => mutatedJson(fc.constant(s.envelope))
  const ownTopic = sample.filter((s) => topicsOf.includes(s.topic)).chain((s) => fc.record({ topic: fc.constant(s.topic), payload: payload(s) }))
  const otherTopic = fc.record({ topic: fc.constantFrom(...topicsOf), payload: sample.chain(payload) })
  const root = `${topics.root(gatewayId)}/`
  const inRoot = fc.record({
    topic: fc.oneof(
      mutatedText(fc.constantFrom(...topicsOf.map((t) => t.slice(root.length)))).map((rest) => `${root}${rest}`.replace(/[+#\u0000]/g, '_')),
      fc.constantFrom(`${root}link/${'c'.repeat(65)}`, `${root}res/`, `${root}evt/endpoint/x`, `${root}status/`, `${root}${'x/'.repeat(200)}`),
    ),
    payload: sample.chain(payload),
  })
  const anywhere = fc.record({ topic: mutatedText(fc.constantFrom(...samples.map((s) => s.topic))), payload: sample.chain(payload) })
  return fc.oneof(
    { weight: 40, arbitrary: ownTopic },
    { weight: 10, arbitrary: otherTopic },
    { weight: 6, arbitrary: inRoot },
    { weight: options.asGateway ? 1 : 6, arbitrary: anywhere },
  ).map(({ topic, payload }) => ({ topic, payload: Buffer.from(payload, 'utf8') }))
}

export const mqttDecodeTarget: FuzzTarget<MqttCase> = {
  name: 'mqtt-decode',
  what: 'MQTT topic + envelope on every topic of the contract through decodeMessage (gateway/protocol)',
  arbitrary: () => mqttCases('gw-fuzz'),
  open: async (): Promise<FuzzSession<MqttCase>> => ({
    run: ({ topic, payload }) => {
      const decoded = decodeMessage(topic, payload)
      return decoded.ok ? `ok:${decoded.topic.kind}` : decoded.code
    },
    close: async () => undefined,
  }),
}
