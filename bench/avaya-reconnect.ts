/**
 * Avaya IP Office (MTCTI-3): time from the PBX dropping the connection to every user's state restored
 * (a new snapshot per user), through the real adapter and the MTCTI-3 simulator over TLS on loopback.
 *
 *   npx tsx bench/avaya-reconnect.ts [--people 500] [--rate 200] [--rounds 5]
 *
 * Prints one line per round and the median; the reconnect backoff's first retry (0.5-1 s, jittered) is part
 * of the figure, as it would be in the field.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { AvayaIpoAdapter } from '../gateway/src/adapters/avaya-ipo/adapter.js'
import { parseAvayaIpoConfig } from '../gateway/src/adapters/avaya-ipo/config.js'
import { AvayaIpoSimulator } from '../gateway/src/adapters/avaya-ipo/simulator/avaya-ipo-simulator.js'
import type { PbxObservation } from '../gateway/src/adapters/types.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { createRelayCa, RelayPki } from '../cloud-relay/src/pki/relay-pki.js'

const { values } = parseArgs({ options: { people: { type: 'string' }, rate: { type: 'string' }, rounds: { type: 'string' } } })
const people = Number(values.people ?? 500)
const rate = Number(values.rate ?? 200)
const rounds = Number(values.rounds ?? 5)

const ca = await createRelayCa('bench IP Office CA')
const server = await (await RelayPki.load(ca)).issueServerCertificate({ ipAddresses: ['127.0.0.1'] })
const caFile = join(await mkdtemp(join(tmpdir(), 'avaya-bench-')), 'ca.pem')
await writeFile(caFile, ca.caCertPem)

const users = Array.from({ length: people }, (_, i) => ({ extension: String(10000 + i), name: `User ${i}`, email: `user${i}@contoso.example` }))
const credentials = { username: 'bench', password: 'bench' }
const sim = new AvayaIpoSimulator({ users, credentials, tls: { certPem: server.certPem, keyPem: server.keyPem } })
const { port } = await sim.start()
const parsed = parseAvayaIpoConfig({ id: 'ipo-bench', type: 'avaya-ipo', host: '127.0.0.1', port, ...credentials, tls: { caFile }, subscriptionsPerSecond: rate })
if (!parsed.ok) throw new Error(parsed.errors.join('; '))
const adapter = new AvayaIpoAdapter(parsed.config, { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters() })

let pending = new Set<string>()
let done: (() => void) | undefined
adapter.onObservation((o: PbxObservation) => {
  if (o.kind !== 'snapshot') return
  pending.delete(o.endpointId)
  if (pending.size === 0) done?.()
})
const allRestored = (): Promise<void> => new Promise((resolve) => {
  pending = new Set(users.map((user) => user.extension))
  done = resolve
})

let ready = allRestored()
await adapter.start()
await ready
// Some state to carry over: a call and a DND per 50 people.
for (let i = 0; i < people; i += 50) {
  sim.incomingCall(users[i]!.extension)
  sim.setDndAtPhone(users[(i + 1) % people]!.extension, true)
}

const results: number[] = []
for (let round = 1; round <= rounds; round++) {
  await new Promise((resolve) => setTimeout(resolve, 200))
  const subscribesBefore = sim.stats.subscribes
  ready = allRestored()
  const start = performance.now()
  sim.dropAllConnections()
  await ready
  const ms = performance.now() - start
  results.push(ms)
  process.stdout.write(`round ${round}: ${people} users restored ${(ms / 1000).toFixed(2)} s after the drop (${sim.stats.subscribes - subscribesBefore} Subscribe requests, peak ${sim.peakSubscribeRate(1000)} in any second)\n`)
}
results.sort((a, b) => a - b)
process.stdout.write(`median ${((results[Math.floor(results.length / 2)] ?? 0) / 1000).toFixed(2)} s, worst ${((results.at(-1) ?? 0) / 1000).toFixed(2)} s for ${people} users at ${rate} subscriptions/s (target: within 5 s)\n`)
await adapter.stop()
await sim.stop()
