/**
 * Burst: thousands of people change PBX state within one second. Drives the real relay (embedded broker,
 * PGlite, sync engine, presence writer, msal-node + graph-client) through its MQTT ingest, with a stand-in
 * gateway publishing valid protocol messages, against the Graph simulator over HTTPS. (The real gateway and
 * OSBiz simulator are not used: they monitor extensions at 20/s, so 5,000 people would take minutes to set up.)
 *
 *   npm run bench:burst -- --people 5000 --window 1000
 *
 * Checks: every person's final Teams state at the simulator is right; Graph requests (as Graph counts them) per
 * distinct final change <= 1.05; the busiest 30 s window stays within Graph's 10,000 presence requests; no 429.
 */
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import mqtt from 'mqtt'
import pino from 'pino'
import { GraphSimulator } from '../cloud-relay/graph-sim/graph-simulator.js'
import { Relay } from '../cloud-relay/src/app.js'
import { parseRelayConfig } from '../cloud-relay/src/config/load.js'
import { createEnvelope, encodeEnvelope } from '../gateway/protocol/codec.js'
import type { EndpointData } from '../gateway/protocol/schemas.js'
import { topics } from '../gateway/protocol/topics.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'

const { values } = parseArgs({
  options: {
    people: { type: 'string', default: '5000' },
    window: { type: 'string', default: '1000' },
    timeout: { type: 'string', default: '180' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  process.stdout.write(
    'npm run bench:burst -- [--people N (5000)] [--window MS (1000): the burst\'s length] [--timeout S (180)]\n' +
      'Drives the relay through its MQTT ingest (a stand-in gateway), Graph simulator over HTTPS.\n' +
      'Exit 1 when a target is missed: mismatches 0, writes/changes <= 1.05, peak 30 s window <= 10,000, no 429.\n',
  )
  process.exit(0)
}
const peopleCount = Number(values.people)
const windowMs = Number(values.window)
const timeoutS = Number(values.timeout)
const log = (line: string) => process.stdout.write(`${line}\n`)
const GRAPH_PRESENCE_LIMIT = 10_000
const GATEWAY = 'gw-burst'
const CONNECTOR = 'pbx'

// ---- the people and what happens to them ----------------------------------------------------------------------
type Plan = 'starts-call' | 'ends-call' | 'missed-call' | 'stays-busy' | 'stays-idle'
interface Person { extension: string; email: string; plan: Plan }
const plans: Plan[] = ['starts-call', 'starts-call', 'starts-call', 'starts-call', 'ends-call', 'ends-call', 'ends-call', 'missed-call', 'stays-busy', 'stays-idle']
const people: Person[] = Array.from({ length: peopleCount }, (_, i) => ({
  extension: String(10000 + i),
  email: `person${i}@contoso.example`,
  plan: plans[i % plans.length]!,
}))
const busyBefore = (p: Person) => p.plan === 'ends-call' || p.plan === 'stays-busy'
const busyAfter = (p: Person) => p.plan === 'starts-call' || p.plan === 'stays-busy'

// ---- services -----------------------------------------------------------------------------------------------
const logger = pino({ level: 'silent' })
const clientSecret = randomBytes(16).toString('hex')
const graph = new GraphSimulator({
  apps: [{ displayName: 'PBX presence relay', clientSecret }],
  users: people.map((p) => ({ displayName: p.email, userPrincipalName: p.email })),
  logger,
})
await graph.start()
const app = graph.apps[0]!
const gatewayPassword = randomBytes(12).toString('hex')
const relayPassword = randomBytes(12).toString('hex')
const config = parseRelayConfig({
  logLevel: 'silent',
  broker: { mode: 'embedded', host: '127.0.0.1', port: 0, relayPassword, passwordListener: true },
  database: { pgliteDir: 'memory' },
  graph: { authorityHost: graph.url, graphBaseUrl: graph.url },
  tenants: [{
    id: 'contoso',
    graph: { tenantId: graph.tenantId, clientId: app.clientId, clientSecret },
    gateways: [{ id: GATEWAY, password: gatewayPassword }],
  }],
  sync: { pollIntervalMs: 5000 },
  http: { port: 0 },
})
const relay = new Relay(config, { logger, clock: systemClock, counters: new Counters(), graphCaPem: graph.caPem })
log(`starting the relay and the Graph simulator with ${peopleCount} people...`)
await relay.start()

// ---- the stand-in gateway -------------------------------------------------------------------------------------
const gw = await mqtt.connectAsync(`mqtt://127.0.0.1:${relay.brokerPort}`, {
  clientId: GATEWAY, username: GATEWAY, password: gatewayPassword, protocolVersion: 4,
})
let seq = 0
const publish = (topic: string, type: Parameters<typeof createEnvelope>[0], data: unknown, retain = false) =>
  gw.publishAsync(topic, encodeEnvelope(createEnvelope(type, data as never, { gatewayId: GATEWAY, seq: ++seq })), { qos: 1, retain })
const endpoint = (p: Person, state: EndpointData['state'], calls: number, cause: string): Promise<unknown> =>
  publish(topics.endpoint(GATEWAY), 'endpoint', { connectorId: CONNECTOR, endpointId: p.extension, state, calls, dnd: false, dndOwner: null, changedAt: Date.now(), cause } satisfies EndpointData)

await publish(topics.status(GATEWAY), 'status', { state: 'online', version: 'bench', startedAt: Date.now() }, true)
await publish(topics.directory(GATEWAY), 'directory', { connectorId: CONNECTOR, entries: people.map((p) => ({ endpointId: p.extension, name: p.email, email: p.email })) })
const waitFor = async (check: () => boolean, what: string, seconds = timeoutS) => {
  const deadline = Date.now() + seconds * 1000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
await waitFor(() => relay.engine.graphUserIds('contoso').length === peopleCount, 'people to be mapped to Microsoft 365 users')
log(`mapped ${peopleCount} people; publishing the state before the burst...`)
await Promise.all(people.map((p) => (busyBefore(p) ? endpoint(p, 'busy', 1, 'snapshot') : endpoint(p, 'idle', 0, 'snapshot'))))
const sessionOf = (p: Person) => graph.getSession(p.email, app.clientId)
await waitFor(() => people.every((p) => (sessionOf(p) !== undefined) === busyBefore(p)), 'the initial Teams sessions')
await relay.engine.idle()
log(`before: ${people.filter(busyBefore).length} people in a call (Teams session set), ${people.filter((p) => !busyBefore(p)).length} idle`)

// ---- the burst --------------------------------------------------------------------------------------------------
graph.resetStats()
const writes = () => (graph.requestStats().byOperation['setPresence'] ?? 0) + (graph.requestStats().byOperation['clearPresence'] ?? 0)
let lastWriteAt = 0
graph.on('setPresence', () => { lastWriteAt = performance.now() })
graph.on('clearPresence', () => { lastWriteAt = performance.now() })
/** Each person's messages in order; realistic noise: duplicates, ringing → connected within ms, hold/retrieve. */
function script(p: Person): Array<() => Promise<unknown>> {
  switch (p.plan) {
    case 'starts-call': return [
      () => endpoint(p, 'ringing', 1, 'call.alerting'),
      () => endpoint(p, 'ringing', 1, 'call.alerting'),
      () => endpoint(p, 'busy', 1, 'call.connected'),
      () => endpoint(p, 'held', 1, 'call.held'),
      () => endpoint(p, 'busy', 1, 'call.retrieved'),
    ]
    case 'ends-call': return [
      () => endpoint(p, 'held', 1, 'call.held'),
      () => endpoint(p, 'busy', 1, 'call.retrieved'),
      () => endpoint(p, 'idle', 0, 'call.cleared'),
      () => endpoint(p, 'idle', 0, 'call.cleared'),
    ]
    case 'missed-call': return [
      () => endpoint(p, 'ringing', 1, 'call.alerting'),
      () => endpoint(p, 'idle', 0, 'call.cleared'),
    ]
    case 'stays-busy': return [() => endpoint(p, 'busy', 1, 'call.connected')]
    case 'stays-idle': return [() => endpoint(p, 'idle', 0, 'snapshot')]
  }
}
const scripts = people.map(script)
const messages = scripts.reduce((n, s) => n + s.length, 0)
log(`burst: ${peopleCount} people, ${messages} endpoint messages within ${windowMs} ms...`)
const slices = 20
const started = performance.now()
// The PBX side does not wait for the relay: each slice goes out at its time, whatever the acknowledgements of the
// earlier ones, as a gateway forwards PBX events as they happen. The relay's MQTT ingest queues what it cannot
// process at once; "acknowledged" below says when the broker had acknowledged every message.
const inFlight: Promise<unknown>[] = []
for (let slice = 0; slice < slices; slice++) {
  for (let i = slice; i < people.length; i += slices) {
    // Each person's own messages in order: one MQTT connection keeps publish order, as a gateway's does.
    for (const step of scripts[i]!) inFlight.push(step())
  }
  const due = started + ((slice + 1) * windowMs) / slices
  const wait = due - performance.now()
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
}
const publishedIn = performance.now() - started
await Promise.all(inFlight)
const acknowledgedIn = performance.now() - started
log(`published in ${publishedIn.toFixed(0)} ms (all acknowledged after ${acknowledgedIn.toFixed(0)} ms); waiting for Teams to be right for everyone...`)
const mismatches = () => people.filter((p) => (sessionOf(p) !== undefined) !== busyAfter(p)).length
let progress = 0
await waitFor(() => {
  const left = mismatches()
  if (performance.now() - progress > 2000) {
    progress = performance.now()
    log(`  ${((performance.now() - started) / 1000).toFixed(1)} s: ${left} people not yet right, ${writes()} writes so far`)
  }
  return left === 0
}, 'every final Teams state').catch((err: unknown) => log(`  ${(err as Error).message}`))
await relay.engine.idle()
await new Promise((resolve) => setTimeout(resolve, 1000)) // anything late would show now

// ---- figures ----------------------------------------------------------------------------------------------------
const stats = graph.requestStats()
const wrong = mismatches()
const changes = people.filter((p) => busyBefore(p) !== busyAfter(p)).length
const graphWrites = writes()
const ratio = graphWrites / changes
const throttled = (stats.byStatus['429'] ?? 0) + (stats.byInnerStatus['429'] ?? 0)
const writer = relay.engine.presenceWriter('contoso')
log('')
log('mode                      relay MQTT ingest with a stand-in gateway (not the real gateway/PBX simulator)')
log(`final Teams state wrong   ${wrong} of ${peopleCount} (target 0)`)
log(`distinct final changes    ${changes} (${people.filter((p) => !busyBefore(p) && busyAfter(p)).length} set, ${people.filter((p) => busyBefore(p) && !busyAfter(p)).length} cleared)`)
log(`presence writes           ${graphWrites} as Graph counts them (setPresence ${stats.byOperation['setPresence'] ?? 0}, clearPresence ${stats.byOperation['clearPresence'] ?? 0})`)
log(`writes per change         ${ratio.toFixed(3)} (target <= 1.05)`)
log(`all Graph requests        ${stats.graphRequests} as Graph counts them (incl. presence polling), ${stats.graphHttpRequests} HTTP requests`)
log(`batches                   ${stats.batches}; sizes ${JSON.stringify(stats.batchSizes)}`)
log(`peak 30 s window          ${stats.peak30s.presenceWrites} presence writes, ${stats.peak30s.graphRequests} Graph requests (limit ${GRAPH_PRESENCE_LIMIT} per app per tenant)`)
log(`429 answers               ${throttled}`)
log(`superseded in the writer  ${writer?.stats.superseded ?? 0}; unchanged dropped ${writer?.stats.unchanged ?? 0}`)
log(`last write landed         ${((lastWriteAt - started) / 1000).toFixed(2)} s after the burst began`)
const missed: string[] = []
if (wrong !== 0) missed.push('final state mismatches')
if (!(ratio <= 1.05)) missed.push('writes per change above 1.05')
if (stats.peak30s.graphRequests > GRAPH_PRESENCE_LIMIT) missed.push('30 s window above the documented limit')
if (throttled > 0) missed.push('Graph answered 429')
log(missed.length === 0 ? 'result                    all targets met' : `result                    MISSED: ${missed.join('; ')}`)
await gw.endAsync()
await relay.stop()
await graph.stop()
process.exit(missed.length === 0 ? 0 : 1)
