import t from 'tap'
import { createEnvelope, decodeMessage, encodeEnvelope, validateData } from '../../gateway/protocol/codec.js'
import { MAX_BUNDLE_BYTES, MAX_PAYLOAD_BYTES_BY_KIND } from '../../gateway/protocol/limits.js'
import type { UpdateCommandData, UpdateProgressData } from '../../gateway/protocol/schemas.js'
import { parseTopic, topics } from '../../gateway/protocol/topics.js'

const command: UpdateCommandData = {
  updateId: 'r1-gw1',
  version: '1.4.2',
  size: 123_456_789,
  sha256: 'a'.repeat(64),
  url: 'https://relay.example.net:8443/updates/v1/bundles/1.4.2',
  token: 'gw1.1.4.2.1765000000000.' + 'x'.repeat(43),
  installAt: 'now',
}
const progress: UpdateProgressData = { updateId: 'r1-gw1', version: '1.4.2', state: 'downloading', bytes: 1000, total: 123_456_789, runningVersion: '1.4.1', slot: 'A', at: Date.UTC(2026, 11, 3) }

function decode(topic: string, data: unknown, type: string) {
  const envelope = { ...createEnvelope('cmd.ping', { sentAt: 1 }, { gatewayId: 'gw1', seq: 1 }), type, data }
  return decodeMessage(topic, Buffer.from(JSON.stringify(envelope)))
}

t.test('cmd/update and the update topic are part of the contract', async (t) => {
  t.same(parseTopic(topics.command('gw1', 'update')), { gatewayId: 'gw1', kind: 'command', name: 'update' })
  t.same(parseTopic(topics.update('gw1')), { gatewayId: 'gw1', kind: 'update' })
  const cmd = decodeMessage(topics.command('gw1', 'update'), encodeEnvelope(createEnvelope('cmd.update', command, { gatewayId: 'gw1', seq: 3 })))
  t.ok(cmd.ok, 'a valid cmd/update decodes')
  const later = decode(topics.command('gw1', 'update'), { ...command, installAt: '2026-12-04T02:00:00Z' }, 'cmd.update')
  t.ok(later.ok, 'an install time with a zone is accepted')
  for (const state of ['queued', 'verifying', 'installing', 'rebooting', 'healthy'] as const) {
    t.ok(decode(topics.update('gw1'), { ...progress, state, bytes: undefined, total: undefined }, 'update').ok, `state ${state}`)
  }
  t.ok(decode(topics.update('gw1'), { ...progress, state: 'rolled-back', reason: 'the gateway did not start within 5 minutes', bytes: undefined, total: undefined }, 'update').ok)
  t.ok(decodeMessage(topics.update('gw1'), encodeEnvelope(createEnvelope('update', progress, { gatewayId: 'gw1', seq: 9 }))).ok)
  t.equal(validateData('update', progress), undefined, 'senders check progress before publishing')
})

t.test('a status may carry the booted slot (added within v1) and still decodes without it', async (t) => {
  const base = { state: 'online', version: '1.4.2', startedAt: 1 }
  t.ok(decode(topics.status('gw1'), { ...base, slot: 'B' }, 'status').ok)
  t.ok(decode(topics.status('gw1'), base, 'status').ok)
  const bad = decode(topics.status('gw1'), { ...base, slot: 'B\n' }, 'status')
  t.equal(bad.ok, false, 'a slot with a control character is refused')
})

t.test('bad update commands are refused with a reason in words', async (t) => {
  const cases: Array<[string, Partial<Record<keyof UpdateCommandData, unknown>>, string, RegExp]> = [
    ['plain http', { url: 'http://relay.example.net/updates/v1/bundles/1.4.2' }, 'PROTO_DATA', /https URL/],
    ['a short hash', { sha256: 'abc' }, 'PROTO_DATA', /SHA-256.*64 lower-case hex/],
    ['an upper-case hash', { sha256: 'A'.repeat(64) }, 'PROTO_DATA', /SHA-256/],
    ['a size of 0', { size: 0 }, 'PROTO_DATA', /size/],
    ['a bundle beyond 4 GiB', { size: MAX_BUNDLE_BYTES + 1 }, 'PROTO_LIMIT', /above the limit of 4294967296.*4 GiB/],
    ['a version with a slash', { version: '../1.4' }, 'PROTO_DATA', /release version/],
    ['an install time without a zone', { installAt: '2026-12-04T02:00:00' }, 'PROTO_DATA', /installAt|ISO 8601/],
    ['an impossible install time', { installAt: '2026-13-45T99:00:00Z' }, 'PROTO_DATA', /not a real time.*"now" or an ISO 8601 time/],
    ['a token with spaces', { token: 'not a token at all!!' }, 'PROTO_DATA', /token/],
    ['a URL too long', { url: `https://relay.example.net/${'a'.repeat(1100)}` }, 'PROTO_LIMIT', /longer than the limit of 1024/],
  ]
  for (const [what, change, code, reason] of cases) {
    const result = decode(topics.command('gw1', 'update'), { ...command, ...change }, 'cmd.update')
    t.equal(result.ok, false, `${what}: refused`)
    if (!result.ok) {
      t.equal(result.code, code, `${what}: ${result.code}`)
      t.match(result.reason, reason, `${what}: ${result.reason}`)
      t.notMatch(result.reason, /#\/|anyOf|\/properties\//, `${what}: no raw schema path`)
    }
  }
  const missing = decode(topics.command('gw1', 'update'), { ...command, sha256: undefined }, 'cmd.update')
  t.equal(missing.ok, false, 'a command without a hash is refused')
  const onResync = decode(topics.command('gw1', 'resync'), command, 'cmd.update')
  t.match(onResync, { ok: false, code: 'PROTO_TYPE' }, 'cmd.update only on cmd/update')
})

t.test('bad progress reports are refused with a reason in words', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['an unknown state', { state: 'exploded' }, 'PROTO_DATA', /state/],
    ['more bytes than the bundle', { bytes: 2000, total: 1000 }, 'PROTO_DATA', /bytes can be at most total/],
    ['a reason with NUL', { state: 'failed', reason: 'bad\u0000' }, 'PROTO_DATA', /reason/],
    ['a reason too long', { state: 'failed', reason: 'x'.repeat(600) }, 'PROTO_LIMIT', /longer than the limit of 512/],
    ['an extra field', { extra: 1 }, 'PROTO_DATA', /extra|additional/i],
  ]
  for (const [what, change, code, reason] of cases) {
    const result = decode(topics.update('gw1'), { ...progress, ...change }, 'update')
    t.equal(result.ok, false, `${what}: refused`)
    if (!result.ok) {
      t.equal(result.code, code, `${what}: ${result.code}`)
      t.match(result.reason, reason, `${what}: ${result.reason}`)
    }
  }
  const big = Buffer.alloc(MAX_PAYLOAD_BYTES_BY_KIND.update + 1, 0x20)
  t.match(decodeMessage(topics.update('gw1'), big), { ok: false, code: 'PROTO_TOO_LARGE' })
  t.match(decode(topics.telemetry('gw1'), progress, 'update'), { ok: false, code: 'PROTO_TYPE' }, 'progress only on the update topic')
})

t.test('the largest valid update command and progress fit their topic caps', async (t) => {
  const largest = { ...command, updateId: 'u'.repeat(64), version: 'v'.repeat(64), url: `https://${'h'.repeat(1016)}`, token: 't'.repeat(512), installAt: '2026-12-04T02:00:00.000+01:00' }
  const cmd = encodeEnvelope(createEnvelope('cmd.update', largest, { gatewayId: 'g'.repeat(64), seq: Number.MAX_SAFE_INTEGER, id: 'i'.repeat(64) }))
  t.ok(cmd.byteLength <= MAX_PAYLOAD_BYTES_BY_KIND.command, `${cmd.byteLength} bytes`)
  t.ok(decodeMessage(topics.command('g'.repeat(64), 'update'), cmd).ok)
  const report = { ...progress, updateId: 'u'.repeat(64), version: 'v'.repeat(64), reason: '"'.repeat(512), runningVersion: '\\'.repeat(64), slot: 's'.repeat(16), state: 'failed' as const }
  const msg = encodeEnvelope(createEnvelope('update', report, { gatewayId: 'g'.repeat(64), seq: Number.MAX_SAFE_INTEGER, id: 'i'.repeat(64) }))
  t.ok(msg.byteLength <= MAX_PAYLOAD_BYTES_BY_KIND.update, `${msg.byteLength} bytes`)
})
