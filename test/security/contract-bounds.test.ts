import t from 'tap'
import { createEnvelope, decodeMessage, encodeEnvelope } from '../../gateway/protocol/codec.js'
import { topics } from '../../gateway/protocol/topics.js'
import { eventually } from '../helpers/eventually.js'
import { endpointState, envelopeOf, startTwoTenantRelay } from './fixtures/two-tenant-relay.js'

const GW = 'gw-a'
/** The exact message that stopped every tenant's writes: 2^53 + 1 ms is far beyond what a Date holds. */
const POISON = `{"v":1,"id":"poison-1","ts":${Date.now()},"gatewayId":"${GW}","seq":7,"type":"endpoint","data":{"connectorId":"pbx1","endpointId":"201","state":"busy","calls":1,"dnd":false,"dndOwner":null,"changedAt":9007199254740993,"cause":"call.connected"}}`

const raw = (type: string, data: unknown, header: Record<string, unknown> = {}) =>
  JSON.stringify({ v: 1, id: 'm-1', ts: Date.now(), gatewayId: GW, seq: 1, type, data, ...header })
const ep = endpointState('201')
const link = { connectorId: 'pbx1', pbxType: 'osbiz', state: 'connected', since: Date.now(), endpoints: 10 }
const telemetry = { uptimeS: 10, rssBytes: 1000, eventsSent: 1, invalidCommands: 0 }
const status = { state: 'online', version: '1.0.0', startedAt: Date.now() }
const result = { correlationId: 'c-1', command: 'setDnd', ok: true }
const long = (n: number) => 'x'.repeat(n)

/** Absurd values, one field at a time: [what, topic, payload, expected code]. */
const ABSURD: Array<[string, string, string, string]> = [
  ['envelope ts after 2100', topics.endpoint(GW), raw('endpoint', ep, { ts: 9007199254740993 }), 'PROTO_LIMIT'],
  ['envelope seq beyond safe integers', topics.endpoint(GW), raw('endpoint', ep, { seq: 2 ** 60 }), 'PROTO_LIMIT'],
  ['envelope type of 100 characters', topics.endpoint(GW), raw('endpoint', ep, { type: long(100) }), 'PROTO_LIMIT'],
  ['endpoint event of 10 KB', topics.endpoint(GW), raw('endpoint', ep, { type: long(10_000) }), 'PROTO_TOO_LARGE'],
  ['endpoint changedAt 1e300', topics.endpoint(GW), raw('endpoint', { ...ep, changedAt: 1e300 }), 'PROTO_LIMIT'],
  ['endpoint changedAt in the year 3000', topics.endpoint(GW), raw('endpoint', { ...ep, changedAt: Date.UTC(3000, 0, 1) }), 'PROTO_LIMIT'],
  ['endpoint calls 1e9', topics.endpoint(GW), raw('endpoint', { ...ep, calls: 1e9 }), 'PROTO_LIMIT'],
  ['endpoint cause with a NUL', topics.endpoint(GW), raw('endpoint', { ...ep, cause: 'call\u0000connected' }), 'PROTO_DATA'],
  ['endpoint id with a control character', topics.endpoint(GW), raw('endpoint', { ...ep, endpointId: '20\u00071' }), 'PROTO_DATA'],
  ['link since after 2100', topics.link(GW, 'pbx1'), raw('link', { ...link, since: 1e16 }), 'PROTO_LIMIT'],
  ['link endpoints 1e12', topics.link(GW, 'pbx1'), raw('link', { ...link, endpoints: 1e12 }), 'PROTO_LIMIT'],
  ['link reason of 5,000 characters', topics.link(GW, 'pbx1'), raw('link', { ...link, reason: long(5_000) }), 'PROTO_LIMIT'],
  ['link pbxType of 200 characters', topics.link(GW, 'pbx1'), raw('link', { ...link, pbxType: long(200) }), 'PROTO_LIMIT'],
  ['status startedAt 1e20', topics.status(GW), raw('status', { ...status, startedAt: 1e20 }), 'PROTO_LIMIT'],
  ['status reason with a NUL', topics.status(GW), raw('status', { ...status, reason: 'a\u0000b' }), 'PROTO_DATA'],
  ['telemetry uptime 1e300 s', topics.telemetry(GW), raw('telemetry', { ...telemetry, uptimeS: 1e300 }), 'PROTO_LIMIT'],
  ['telemetry rss 1e20 bytes', topics.telemetry(GW), raw('telemetry', { ...telemetry, rssBytes: 1e20 }), 'PROTO_LIMIT'],
  ['telemetry eventsSent 2^60', topics.telemetry(GW), raw('telemetry', { ...telemetry, eventsSent: 2 ** 60 }), 'PROTO_LIMIT'],
  ['telemetry load 1e9', topics.telemetry(GW), raw('telemetry', { ...telemetry, load1: 1e9 }), 'PROTO_LIMIT'],
  ['telemetry with an array of 1,000 numbers', topics.telemetry(GW), raw('telemetry', { ...telemetry, samples: Array.from({ length: 1000 }, (_, i) => i) }), 'PROTO_DATA'],
  ['telemetry with 100 extra fields', topics.telemetry(GW), raw('telemetry', { ...telemetry, ...Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`f${i}`, i])) }), 'PROTO_LIMIT'],
  ['telemetry of 100 KB', topics.telemetry(GW), raw('telemetry', { ...telemetry, note: long(100_000) }), 'PROTO_TOO_LARGE'],
  ['result error message of 5,000 characters', topics.result(GW, 'c-1'), raw('result', { ...result, ok: false, error: { code: 'X', message: long(5_000) } }), 'PROTO_LIMIT'],
  ['result for another correlation id than its topic', topics.result(GW, 'c-2'), raw('result', result), 'PROTO_DATA'],
  ['result endpoint changedAt after 2100', topics.result(GW, 'c-1'), raw('result', { ...result, endpoint: { ...ep, changedAt: 9007199254740993 } }), 'PROTO_LIMIT'],
  ['directory of 501 entries', topics.directory(GW), raw('directory', { connectorId: 'pbx1', entries: Array.from({ length: 501 }, (_, i) => ({ endpointId: String(i), name: 'n' })) }), 'PROTO_LIMIT'],
  ['directory name of 10,000 characters', topics.directory(GW), raw('directory', { connectorId: 'pbx1', entries: [{ endpointId: '1', name: long(10_000) }] }), 'PROTO_LIMIT'],
  ['directory part 3 of 2', topics.directory(GW), raw('directory', { connectorId: 'pbx1', entries: [], part: 3, parts: 2 }), 'PROTO_DATA'],
  ['directory parts 1e6', topics.directory(GW), raw('directory', { connectorId: 'pbx1', entries: [], part: 1, parts: 1e6 }), 'PROTO_LIMIT'],
]

t.test('the decoder refuses absurd values in every field with a stable code and words', async (t) => {
  const poison = decodeMessage(topics.endpoint(GW), Buffer.from(POISON))
  t.same(poison.ok ? 'accepted' : poison.code, 'PROTO_LIMIT', 'the exact poison message is refused')
  if (!poison.ok) t.match(poison.reason, /changedAt.*above the limit of 4102444800000 \(epoch milliseconds between 1970-01-01 and 2100-01-01\)/)
  for (const [what, topic, payload, code] of ABSURD) {
    const decoded = decodeMessage(topic, Buffer.from(payload))
    t.equal(decoded.ok ? 'accepted' : decoded.code, code, what)
    if (!decoded.ok) t.ok(decoded.reason.length > 10 && decoded.reason.length < 400, `${what}: a reason in words (${decoded.reason.slice(0, 120)})`)
  }
  // The limits still let every real message through.
  t.ok(decodeMessage(topics.endpoint(GW), envelopeOf(GW, 'endpoint', ep)).ok, 'a real endpoint event decodes')
  const newer = { ...telemetry, newerField: 3, label: 'x' }
  t.ok(decodeMessage(topics.telemetry(GW), encodeEnvelope(createEnvelope('telemetry', newer, { gatewayId: GW, seq: 1 }))).ok, 'telemetry with scalar fields a newer gateway adds decodes')
})

t.test('one poison message from one gateway stops nobody: refused, logged, counted; good messages of both tenants land', async (t) => {
  const world = await startTwoTenantRelay()
  t.teardown(() => world.stop())
  const a = await world.connect('gw-a')
  const b = await world.connect('gw-b')
  await a.publishAsync(topics.endpoint('gw-a'), POISON, { qos: 1 })
  await eventually(() => world.counters.get('relay.invalid.PROTO_LIMIT') === 1, 'the poison message to be refused and counted')
  const refusedLines = world.lines().filter((l) => l.msg === 'dropped an invalid message' && l.code === 'PROTO_LIMIT')
  t.equal(refusedLines.length, 1, 'one log line')
  t.match(String(refusedLines[0]?.reason), /changedAt.*above the limit/, 'saying which field and why')

  // Each absurd value through the real broker and relay: every one refused and counted, one line each.
  const before = world.counters.get('relay.invalid_messages')
  for (const [, topic, payload] of ABSURD) await a.publishAsync(topic, payload, { qos: 1 })
  await eventually(() => world.counters.get('relay.invalid_messages') - before === ABSURD.length, 'every absurd message to be refused')

  await a.publishAsync(topics.endpoint('gw-a'), envelopeOf('gw-a', 'endpoint', endpointState('201')), { qos: 1 })
  await b.publishAsync(topics.endpoint('gw-b'), envelopeOf('gw-b', 'endpoint', endpointState('301')), { qos: 1 })
  const rows = await eventually(async () => {
    const all = await world.relay.store.listEndpoints()
    return all.some((r) => r.gatewayId === 'gw-a' && r.endpointId === '201') && all.some((r) => r.gatewayId === 'gw-b' && r.endpointId === '301') ? all : undefined
  }, 'the good events of both tenants to be stored')
  t.equal(rows.length, 2, 'both good events stored, nothing of the poison')
  t.equal(world.counters.get('relay.handler_errors'), 0, 'no handler failed')
})

t.test('one gateway cannot flood the relay with connectors, extensions, answers to nothing, telemetry or future times', async (t) => {
  const world = await startTwoTenantRelay({ limits: { connectorsPerGateway: 4, endpointsPerGateway: 100 } })
  t.teardown(() => world.stop())
  const a = await world.connect('gw-a')
  const b = await world.connect('gw-b')
  const linkOf = (connectorId: string) => ({ connectorId, pbxType: 'osbiz', state: 'connected' as const, since: Date.now(), endpoints: 1 })
  const refusedLines = (what: string) => world.lines().filter((l) => l.refused === what)

  await t.test('unknown connector ids: the first few are heard, the rest refused with one line', async (t) => {
    for (let i = 0; i < 10; i++) await a.publishAsync(topics.link('gw-a', `c${i}`), envelopeOf('gw-a', 'link', linkOf(`c${i}`)), { qos: 1 })
    await eventually(() => world.counters.get('relay.refused.connectors') === 6, 'six connectors over the four allowed to be refused')
    t.equal(refusedLines('connectors').length, 1, 'one log line')
    t.match(refusedLines('connectors')[0]?.msg, /names more than 4 connectors/)
    await b.publishAsync(topics.link('gw-b', 'c9'), envelopeOf('gw-b', 'link', linkOf('c9')), { qos: 1 })
    await eventually(async () => (await world.relay.store.db.query("SELECT 1 FROM gateway_links WHERE gateway_id = 'gw-b'")).length === 1, "the other gateway's link to be stored")
    t.equal((await world.relay.store.db.query("SELECT 1 FROM gateway_links WHERE gateway_id = 'gw-a'")).length, 4, 'four links of gateway a stored')
  })

  await t.test('thousands of distinct extensions: capped per gateway with one line; the other gateway is heard', async (t) => {
    for (let i = 0; i < 150; i++) a.publish(topics.endpoint('gw-a'), envelopeOf('gw-a', 'endpoint', { ...endpointState(`x${i}`), connectorId: 'c0' }), { qos: 1 })
    await eventually(() => world.counters.get('relay.refused.endpoints') === 50, 'fifty extensions over the hundred allowed to be refused')
    await b.publishAsync(topics.endpoint('gw-b'), envelopeOf('gw-b', 'endpoint', endpointState('301')), { qos: 1 })
    const rows = await eventually(async () => {
      const all = await world.relay.store.listEndpoints()
      return all.filter((e) => e.gatewayId === 'gw-a').length === 100 && all.some((e) => e.gatewayId === 'gw-b') ? all : undefined
    }, 'the admitted events to be stored')
    t.equal(rows.filter((e) => e.gatewayId === 'gw-a').length, 100, 'a hundred extensions of gateway a')
    t.equal(refusedLines('endpoints').length, 1, 'one log line')
    t.match(refusedLines('endpoints')[0]?.msg, /names more than 100 extensions/)
  })

  await t.test('command results for correlation ids never sent are ignored, counted, said once', async (t) => {
    for (let i = 0; i < 20; i++) await a.publishAsync(topics.result('gw-a', `never-${i}`), envelopeOf('gw-a', 'result', { correlationId: `never-${i}`, command: 'setDnd', ok: true }), { qos: 1 })
    await eventually(() => world.counters.get('relay.refused.unsolicited_result') === 20, 'all twenty to be counted')
    t.equal(refusedLines('unsolicited_result').length, 1, 'one log line')
  })

  await t.test('telemetry beyond 12 a minute is dropped; telemetry with huge arrays never decodes', async (t) => {
    for (let i = 0; i < 30; i++) await a.publishAsync(topics.telemetry('gw-a'), envelopeOf('gw-a', 'telemetry', { uptimeS: i, rssBytes: 1, eventsSent: i, invalidCommands: 0 }), { qos: 1 })
    await eventually(() => world.counters.get('relay.refused.telemetry_rate') >= 15, 'the excess telemetry to be refused')
    t.equal(refusedLines('telemetry_rate').length, 1, 'one log line')
    const stored = await world.relay.store.db.query<{ n: number }>("SELECT count(*)::int AS n FROM gateway_telemetry WHERE gateway_id = 'gw-a'")
    t.ok((stored[0]?.n ?? 0) <= 15, `at most a minute's worth stored (${stored[0]?.n})`)
  })

  await t.test("a time from the future is taken as the relay's now", async (t) => {
    const dayAhead = Date.now() + 24 * 3600_000
    await b.publishAsync(topics.endpoint('gw-b'), envelopeOf('gw-b', 'endpoint', endpointState('302', { changedAt: dayAhead })), { qos: 1 })
    const row = await eventually(async () => (await world.relay.store.listEndpoints()).find((e) => e.gatewayId === 'gw-b' && e.endpointId === '302'), 'the event to be stored')
    t.ok(row.changedAt < dayAhead - 3600_000, 'stored with the relay\'s time, not a day ahead')
    t.equal(world.counters.get('relay.future_times_clamped'), 1)
    t.match(world.lines().find((l) => l.refused === 'future_time')?.msg, /ahead of the relay.*Set the box's clock/)
  })
})
