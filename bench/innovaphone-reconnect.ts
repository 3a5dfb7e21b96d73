/**
 * innovaphone: time from the PBX dropping the connection to every person's state restored (a fresh snapshot
 * for each, with the right calls and DND), through the real adapter and the simulator over a real WebSocket.
 *
 *   npx tsx bench/innovaphone-reconnect.ts -- --people 500 --rounds 5 [--tls]
 *
 * Target (issue 7): within 5 s for 500 people. The time includes the reconnect backoff (first retry after
 * 0.5-1 s, jittered), the login, RCC Initialize (the simulator paces UserInfo at 50 per 20 ms, as the PBX
 * documents), the user table replication and one UserInitialize + SubscribePresence per person.
 */
import { parseArgs } from 'node:util'
import pino from 'pino'
import { createRelayCa, RelayPki } from '../cloud-relay/src/pki/relay-pki.js'
import { InnovaphoneAdapter } from '../gateway/src/adapters/innovaphone/adapter.js'
import { parseInnovaphoneConfig } from '../gateway/src/adapters/innovaphone/config.js'
import { InnovaphoneSimulator, type SimUser } from '../gateway/src/adapters/innovaphone/simulator/innovaphone-simulator.js'
import type { PbxObservation } from '../gateway/src/adapters/types.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((arg) => arg !== '--'),
  options: {
    people: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '5' },
    tls: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help === true) {
  process.stdout.write('npx tsx bench/innovaphone-reconnect.ts -- [--people N] [--rounds N] [--tls]\n')
  process.exit(0)
}
const peopleCount = Number(values.people)
const rounds = Number(values.rounds)
const log = (line: string): void => {
  process.stdout.write(`${line}\n`)
}

const users: SimUser[] = Array.from({ length: peopleCount }, (_, i) => ({
  cn: `Person ${i}`, e164: String(10000 + i), h323: `p${i}`, emails: [`p${i}@contoso.example`],
}))
const app = { appName: 'gateway', appPassword: 'bench-secret' }
let tls: { cert: string; key: string } | undefined
let pin: string | undefined
if (values.tls === true) {
  const pki = await RelayPki.load(await createRelayCa('Bench PBX CA'))
  const issued = await pki.issueServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  tls = { cert: issued.certPem, key: issued.keyPem }
  pin = issued.fingerprint256
}
const sim = new InnovaphoneSimulator({ users, ...app, ...(tls === undefined ? {} : { tls }) })
const { port } = await sim.start()
const parsed = parseInnovaphoneConfig({
  id: 'bench', type: 'innovaphone', host: '127.0.0.1', port, tls: tls !== undefined, ...(pin === undefined ? {} : { certificateSha256: pin }), ...app,
})
if (!parsed.ok) throw new Error(parsed.errors.join('; '))
const adapter = new InnovaphoneAdapter(parsed.config, { logger: pino({ level: process.env.BENCH_LOG ?? 'silent' }), clock: systemClock, counters: new Counters() })

const snapshots = new Map<string, Extract<PbxObservation, { kind: 'snapshot' }>>()
let connectedAt = 0
let waiter: (() => void) | undefined
adapter.onObservation((o) => {
  if (o.kind === 'link' && o.state === 'connected') connectedAt = performance.now()
  if (o.kind === 'snapshot') {
    snapshots.set(o.endpointId, o)
    if (snapshots.size === peopleCount) waiter?.()
  }
})
const allRestored = (): Promise<void> => new Promise((resolve) => {
  if (snapshots.size === peopleCount) resolve()
  else waiter = resolve
})

const t0 = performance.now()
await adapter.start()
await allRestored()
log(`innovaphone reconnect bench: ${peopleCount} people, ${tls === undefined ? 'ws://' : 'wss:// (pinned certificate)'}, loopback, one process`)
log(`first start: all ${peopleCount} snapshots after ${(performance.now() - t0).toFixed(0)} ms`)

// Some live state so the snapshots have something to be right about.
for (let i = 0; i < peopleCount; i += 10) sim.incomingCall(String(10000 + i))
for (let i = 3; i < peopleCount; i += 7) sim.answer(sim.incomingCall(String(10000 + i)))
for (let i = 0; i < peopleCount; i += 5) sim.setDndAtPhone(String(10000 + i), true)

const totals: number[] = []
const syncs: number[] = []
for (let round = 1; round <= rounds; round++) {
  snapshots.clear()
  await new Promise((resolve) => setTimeout(resolve, 200))
  const droppedAt = performance.now()
  sim.dropAllConnections()
  await allRestored()
  const doneAt = performance.now()
  let wrong = 0
  const expected = new Map<string, string[]>()
  for (const call of sim.calls()) for (const leg of call.legs) expected.set(leg.e164, [...(expected.get(leg.e164) ?? []), `${call.callId}:${(leg.state & 0x0f) === 5 ? 'connected' : 'alerting'}`])
  for (const user of users) {
    const snapshot = snapshots.get(user.e164)
    const calls = (snapshot?.calls ?? []).map((call) => `${call.callId}:${call.state}`).sort().join(',')
    if (snapshot === undefined || snapshot.dnd !== sim.getDnd(user.e164) || calls !== (expected.get(user.e164) ?? []).sort().join(',')) wrong++
  }
  totals.push(doneAt - droppedAt)
  syncs.push(doneAt - connectedAt)
  log(`round ${round}: drop -> all ${peopleCount} restored in ${(doneAt - droppedAt).toFixed(0)} ms (backoff + login ${(connectedAt - droppedAt).toFixed(0)} ms, synchronisation ${(doneAt - connectedAt).toFixed(0)} ms), ${wrong} wrong`)
}
const sorted = [...totals].sort((a, b) => a - b)
log(`drop -> restored: median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(0)} ms, max ${sorted.at(-1)?.toFixed(0)} ms (target 5000 ms); synchronisation alone: max ${Math.max(...syncs).toFixed(0)} ms`)
await adapter.stop()
await sim.stop()
