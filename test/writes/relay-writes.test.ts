/**
 * The sync engine's Teams writes through the whole relay (real gateway, OSBiz simulator, embedded broker,
 * PGlite, presence writer, msal-node + graph-client, Graph simulator): a group of calls lands with one write per
 * change; throttled writes (outer and inner 429s) are retried and nothing is lost; a call that ends while its
 * write is held back by Retry-After never reaches Graph as a set.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { pino } from 'pino'
import { Stack, type DemoPerson } from '../../scripts/stack.js'
import { eventually } from '../helpers/eventually.js'

const people: DemoPerson[] = Array.from({ length: 24 }, (_, i) => ({ extension: String(300 + i), name: `Person ${i}`, email: `p${i}@contoso.example` }))
const dataDir = await mkdtemp(join(tmpdir(), 'relay-writes-'))
const stack = new Stack({ dataDir, logger: pino({ level: 'silent' }), people, sync: { pollIntervalMs: 1000 } })
t.teardown(async () => {
  await stack.stop()
  await rm(dataDir, { recursive: true, force: true })
})
await stack.start()
await eventually(() => stack.relay!.engine.graphUserIds('contoso').length === people.length, 'people to be mapped', 30_000)
await eventually(() => stack.pbx.monitorCount >= people.length, 'monitors', 30_000)
const graph = stack.graph
const appId = stack.graphClient.clientId
const session = (p: DemoPerson) => graph.getSession(p.email, appId)
const writes = () => (graph.requestStats().byOperation['setPresence'] ?? 0) + (graph.requestStats().byOperation['clearPresence'] ?? 0)

t.test('a group of calls: one write per change, every state right', async (t) => {
  graph.resetStats()
  const calls = people.map((p) => {
    const id = stack.pbx.incomingCall(p.extension)
    stack.pbx.answer(id)
    return id
  })
  await eventually(() => people.every((p) => session(p)?.activity === 'Presenting'), 'every session set')
  for (const id of calls) stack.pbx.hangup(id)
  await eventually(() => people.every((p) => session(p) === undefined), 'every session cleared')
  await stack.relay!.engine.idle()
  t.equal(writes(), people.length * 2, 'one set and one clear per person')
  t.equal(graph.requestStats().byInnerStatus['429'] ?? 0, 0)
})

t.test('throttled writes are retried after Retry-After and nothing is lost', async (t) => {
  graph.resetStats()
  graph.faults.throttleNext(2, 0.2, 'graph')
  graph.faults.throttleNext(3, 0.3, 'batch-item')
  const calls = people.map((p) => {
    const id = stack.pbx.incomingCall(p.extension)
    stack.pbx.answer(id)
    return id
  })
  await eventually(() => people.every((p) => session(p)?.activity === 'Presenting'), 'every session set despite 429s')
  const stats = graph.requestStats()
  t.ok((stats.byStatus['429'] ?? 0) + (stats.byInnerStatus['429'] ?? 0) >= 2, 'Graph throttled some writes')
  t.equal(stats.byOperation['setPresence'] ?? 0, people.length + (stats.byInnerStatus['429'] ?? 0) + countDirectThrottledWrites(), 'each write landed once; only throttled ones were sent again')
  for (const id of calls) stack.pbx.hangup(id)
  await eventually(() => people.every((p) => session(p) === undefined), 'every session cleared')
  t.ok(stack.relayCounters.get('graph.writes_throttled') >= 2, 'the writer counted the throttling')
})

t.test('a call that ends while its write waits for Retry-After is never set', async (t) => {
  graph.resetStats()
  const before = directThrottled
  const [first, second] = people
  // Keep the tenant paused: the first write draws a 429 with a long Retry-After.
  graph.faults.throttleNext(1, 1.5, 'graph')
  const a = stack.pbx.incomingCall(first!.extension)
  stack.pbx.answer(a)
  await eventually(() => directThrottled === before + 1, 'the first write to be throttled')
  const b = stack.pbx.incomingCall(second!.extension)
  stack.pbx.answer(b)
  await new Promise((resolve) => setTimeout(resolve, 200)) // the second call's decision reaches the writer
  stack.pbx.hangup(b)
  await eventually(() => session(first!)?.activity === 'Presenting', 'the first call shows after the pause', 15_000)
  await stack.relay!.engine.idle()
  const sets = graph.requestStats().byOperation['setPresence'] ?? 0
  t.equal(session(second!), undefined, 'the second person shows nothing')
  t.equal(sets, 2, 'the throttled set and its retry; the superseded set for the second person never went out')
  t.equal(graph.requestStats().byOperation['clearPresence'] ?? 0, 0, 'and no clear was needed for it either')
  stack.pbx.hangup(a)
  await eventually(() => session(first!) === undefined, 'cleared')
})

/** Direct (non-batch) setPresence requests answered 429 by a 'graph' fault. */
function countDirectThrottledWrites(): number {
  return directThrottled
}
let directThrottled = 0
graph.on('request', (e) => {
  if (e.operation === 'setPresence' && e.status === 429 && e.batchItem !== true) directThrottled++
})
