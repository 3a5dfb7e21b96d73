import t from 'tap'
import { splitDirectory } from '../../gateway/protocol/directory-parts.js'
import { decodeMessage } from '../../gateway/protocol/codec.js'
import { DIRECTORY_MAX_ENTRIES, MAX_PAYLOAD_BYTES_BY_KIND } from '../../gateway/protocol/limits.js'
import type { DirectoryEntry } from '../../gateway/protocol/schemas.js'
import { topics } from '../../gateway/protocol/topics.js'
import { eventually } from '../helpers/eventually.js'
import { endpointState, envelopeOf, startTwoTenantRelay } from './fixtures/two-tenant-relay.js'

const people = (n: number, domain: string, from = 10_000): DirectoryEntry[] =>
  Array.from({ length: n }, (_, i) => ({ endpointId: String(from + i), name: `Person Number ${i}`, email: `person.${i}@${domain}` }))

t.test('the gateway splits a directory into parts the relay accepts', async (t) => {
  const ipOffice = splitDirectory('ipo', people(3000, 'a.example'))
  t.equal(ipOffice.parts.length, 6, "IP Office's 3,000 users: 6 parts")
  t.same(ipOffice.parts.map((p) => [p.part, p.parts, p.entries.length]), [1, 2, 3, 4, 5, 6].map((n) => [n, 6, 500]))
  const wide = splitDirectory('inno', Array.from({ length: 2000 }, (_, i) => ({ endpointId: `${i}`, name: '\u0001'.repeat(256), email: `${'\u00e9'.repeat(300)}@x` })))
  t.ok(wide.parts.length > 4, `long names split by bytes too (${wide.parts.length} parts)`)
  for (const part of [...ipOffice.parts, ...wide.parts]) {
    const payload = envelopeOf('gw-a', 'directory', part)
    t.ok(payload.byteLength <= MAX_PAYLOAD_BYTES_BY_KIND.directory && part.entries.length <= DIRECTORY_MAX_ENTRIES, `part ${part.part}: ${payload.byteLength} bytes, within the caps`)
    const decoded = decodeMessage(topics.directory('gw-a'), payload)
    t.ok(decoded.ok, decoded.ok ? 'decodes' : decoded.reason)
  }
  t.same(splitDirectory('empty', []).parts, [{ connectorId: 'empty', entries: [], part: 1, parts: 1 }], 'an empty directory is one empty part')
})

t.test('a 12,000-entry directory message is refused with one log line; a 3,000-user directory in parts is applied completely', async (t) => {
  const world = await startTwoTenantRelay()
  t.teardown(() => world.stop())
  const a = await world.connect('gw-a')
  const b = await world.connect('gw-b')

  const flood = envelopeOf('gw-a', 'directory', { connectorId: 'pbx1', entries: people(12_000, 'a.example') })
  t.ok(flood.byteLength > 900_000, `the flood is ${Math.round(flood.byteLength / 1024)} KB`)
  await a.publishAsync(topics.directory('gw-a'), flood, { qos: 1 })
  await eventually(() => world.counters.get('relay.invalid.PROTO_TOO_LARGE') === 1, 'the flood to be refused')
  const refused = world.lines().filter((l) => l.msg === 'dropped an invalid message')
  t.equal(refused.length, 1, 'one log line')
  t.match(refused[0]?.reason, /at most 262144 bytes.*send the directory in parts/, 'saying what to do instead')
  // In one message, 3,000 entries are refused too: larger directories come in parts.
  await a.publishAsync(topics.directory('gw-a'), envelopeOf('gw-a', 'directory', { connectorId: 'pbx1', entries: people(3000, 'a.example') }), { qos: 1 })
  await eventually(() => world.counters.get('relay.invalid.PROTO_LIMIT') === 1, 'the single 3,000-entry message to be refused')
  t.match(world.lines().filter((l) => l.code === 'PROTO_LIMIT')[0]?.reason, /send a larger directory in parts/)

  const { parts } = splitDirectory('pbx1', people(3000, 'a.example'))
  for (const part of parts) await a.publishAsync(topics.directory('gw-a'), envelopeOf('gw-a', 'directory', part), { qos: 1 })
  await b.publishAsync(topics.directory('gw-b'), envelopeOf('gw-b', 'directory', { connectorId: 'pbx1', entries: people(5, 'b.example') }), { qos: 1 })
  const endpoints = await eventually(async () => {
    const all = await world.relay.store.listEndpoints()
    return all.filter((e) => e.gatewayId === 'gw-a').length === 3000 && all.filter((e) => e.gatewayId === 'gw-b').length === 5 ? all : undefined
  }, 'every entry of both directories to be applied', 60_000)
  t.ok(endpoints.filter((e) => e.gatewayId === 'gw-a').every((e) => e.name.startsWith('Person Number') && e.personId !== null), 'with names and people')
  const stored = await world.relay.store.listPeople()
  t.equal(stored.filter((p) => p.tenantId === 'tenant-a').length, 3000, '3,000 people in tenant a')
  t.equal(stored.filter((p) => p.tenantId === 'tenant-b').length, 5, '5 in tenant b')
  await eventually(() => world.lines().some((l) => l.msg === 'PBX directory received' && l.gatewayId === 'gw-a' && l.parts === 6), 'the whole directory to be noted once its last part is in')
})

t.test('directory messages per gateway per minute are capped, and so are the people one gateway makes', async (t) => {
  const world = await startTwoTenantRelay({ relay: { sync: { maxPeoplePerTenant: 50 } } })
  t.teardown(() => world.stop())
  const a = await world.connect('gw-a')
  const b = await world.connect('gw-b')
  for (let i = 0; i < 70; i++) await a.publishAsync(topics.directory('gw-a'), envelopeOf('gw-a', 'directory', { connectorId: 'pbx1', entries: people(1, 'a.example', 20_000 + i) }), { qos: 1 })
  // 60 a minute, with a minute's worth as burst: of 70 sent at once about 10 are refused (the bucket refills as they arrive).
  const applied = async () => (await world.relay.store.listEndpoints()).filter((e) => e.gatewayId === 'gw-a').length
  await eventually(async () => (await applied()) + world.counters.get('relay.refused.directory_rate') === 70, 'each of the 70 messages to be applied or refused')
  t.ok(world.counters.get('relay.refused.directory_rate') >= 5, `the excess is refused (${world.counters.get('relay.refused.directory_rate')})`)
  const rateLines = world.lines().filter((l) => l.refused === 'directory_rate')
  t.equal(rateLines.length, 1, 'one log line')
  t.match(rateLines[0]?.msg, /more than 60 directory messages in a minute/)

  await b.publishAsync(topics.directory('gw-b'), envelopeOf('gw-b', 'directory', { connectorId: 'pbx1', entries: people(80, 'b.example') }), { qos: 1 })
  await b.publishAsync(topics.endpoint('gw-b'), envelopeOf('gw-b', 'endpoint', endpointState('10079')), { qos: 1 })
  await eventually(async () => (await world.relay.store.listEndpoints()).find((e) => e.gatewayId === 'gw-b' && e.endpointId === '10079' && e.state === 'busy'), 'gateway b\'s directory and event to be applied')
  const inB = (await world.relay.store.listPeople()).filter((p) => p.tenantId === 'tenant-b')
  t.equal(inB.length, 50, 'at most 50 people made in tenant b')
  t.equal((await world.relay.store.listEndpoints()).filter((e) => e.gatewayId === 'gw-b').length, 80, 'every extension is still recorded')
  const capLines = world.lines().filter((l) => /its limit for people made from PBX directories/.test(l.msg))
  t.equal(capLines.length, 1, 'one log line in words')
  t.ok((await applied()) >= 60, "gateway a's admitted messages were applied")
})
