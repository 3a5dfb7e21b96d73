import t from 'tap'
import pino from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import { ConfigError, parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { EventRetention } from '../../cloud-relay/src/store/event-retention.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { RelayStore } from '../../cloud-relay/src/store/relay-store.js'
import { openSqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { createPostgresSchema } from '../helpers/postgres.js'

const silent = pino({ level: 'silent' })
const DAY = 86_400_000
const HOUR = 3_600_000
const START = Date.parse('2026-11-21T10:00:00Z')

/** Time that moves only when the test says; timers fire when it is advanced past them. */
class ManualClock implements Clock {
  time = START
  readonly timers = new Map<number, { at: number; fn: () => void }>()
  #next = 1

  now(): number {
    return this.time
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const id = this.#next++
    this.timers.set(id, { at: this.time + ms, fn })
    return id as unknown as ClockTimer
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    if (timer !== undefined) this.timers.delete(timer as unknown as number)
  }

  advance(ms: number): void {
    this.time += ms
    for (const [id, timer] of [...this.timers].sort((a, b) => a[1].at - b[1].at)) {
      if (timer.at > this.time) continue
      this.timers.delete(id)
      timer.fn()
    }
  }
}

async function openStore(backend: 'pglite' | 'postgres') {
  const pgSchema = backend === 'postgres' ? await createPostgresSchema() : undefined
  const db = await openSqlClient({ databaseUrl: pgSchema?.url, dataDir: 'memory' }, silent)
  await migrate(db, silent)
  return {
    store: new RelayStore(db),
    close: async () => {
      await db.close()
      await pgSchema?.drop()
    },
  }
}

async function messages(store: RelayStore): Promise<string[]> {
  return (await store.queryEvents({ limit: 1000 })).map((e) => e.message).sort()
}

for (const backend of ['pglite', 'postgres'] as const) {
  t.test(`retention deletes only old rows, in batches, on ${backend}`, async (t) => {
    const { store, close } = await openStore(backend)
    t.teardown(close)
    const clock = new ManualClock()
    const cutoff = START - 30 * DAY
    for (let i = 0; i < 12; i++) await store.appendEvent({ at: new Date(cutoff - (i + 1) * 60_000), kind: 'teams.set', message: `old ${i}` })
    await store.appendEvent({ at: new Date(cutoff), kind: 'teams.set', message: 'exactly 30 days' })
    await store.appendEvent({ at: new Date(cutoff + 30 * 60_000), kind: 'teams.set', message: '30 days less 30 minutes' })
    await store.appendEvent({ at: new Date(START - HOUR), kind: 'teams.set', message: 'an hour ago' })

    // Count the statements on the real store.
    const batches: number[] = []
    const counting = { deleteEventsOlderThan: async (before: Date, size: number) => { const n = await store.deleteEventsOlderThan(before, size); batches.push(n); return n } }
    const capture = captureLogger('debug')
    const retention = new EventRetention({ retentionDays: 30, batchSize: 5 }, { store: counting, clock, logger: capture.logger })

    retention.start()
    retention.start()
    await retention.idle()
    t.same(batches, [5, 5, 2], '12 old rows in statements of at most 5')
    t.same(await messages(store), ['30 days less 30 minutes', 'an hour ago', 'exactly 30 days'], 'rows at or after the cutoff stay')
    const removedLines = capture.lines().filter((l) => l.msg === 'old events removed')
    t.match(removedLines, [{ level: 30, component: 'event-retention', removed: 12, batches: 3, retentionDays: 30, cutoff: new Date(cutoff).toISOString() }])
    t.equal(clock.timers.size, 1, 'one timer although start() was called twice')
    t.equal([...clock.timers.values()][0]?.at, START + HOUR, 'the next sweep is an hour later')

    // An hour later the 30-minutes-younger row and the one exactly at the old cutoff are past the new cutoff.
    batches.length = 0
    clock.advance(HOUR)
    await retention.idle()
    t.same(batches, [2])
    t.same(await messages(store), ['an hour ago'])
    t.equal(clock.timers.size, 1, 'and the next one is scheduled')

    // Nothing to do: one statement, nothing logged at info.
    batches.length = 0
    clock.advance(HOUR)
    await retention.idle()
    t.same(batches, [0])
    t.equal(capture.lines().filter((l) => l.msg === 'old events removed').length, 2)

    await retention.stop()
    t.equal(clock.timers.size, 0, 'stop() removes its timer')
    await retention.stop()
    clock.advance(2 * HOUR)
    await retention.idle()
    t.same(batches, [0], 'no sweep after stop')

    // start() after stop() sweeps again at once.
    await store.appendEvent({ at: new Date(START - 40 * DAY), kind: 'teams.set', message: 'very old' })
    retention.start()
    await retention.idle()
    t.same(await messages(store), ['an hour ago'])
    await retention.stop()
  })
}

t.test('a failing sweep is logged and retried at the next one', async (t) => {
  const clock = new ManualClock()
  const capture = captureLogger('debug')
  let calls = 0
  const store = {
    deleteEventsOlderThan: async () => {
      calls++
      if (calls === 1) throw new Error('database is restarting')
      return 0
    },
  }
  const retention = new EventRetention({ retentionDays: 1 }, { store, clock, logger: capture.logger })
  retention.start()
  await retention.idle()
  t.match(capture.lines(), [{ level: 40, msg: /removing old events failed/, err: 'database is restarting' }])
  t.equal(clock.timers.size, 1, 'the next sweep is still scheduled')
  clock.advance(HOUR)
  await retention.idle()
  t.equal(calls, 2)
  await retention.stop()
})

t.test('stop() during a large sweep ends it between batches', async (t) => {
  const clock = new ManualClock()
  let calls = 0
  let stopping: Promise<void> | undefined
  const retention = new EventRetention({ retentionDays: 30, batchSize: 5000 }, {
    store: {
      deleteEventsOlderThan: async () => {
        calls++
        if (calls === 2) stopping = retention.stop()
        return 5000
      },
    },
    clock,
    logger: silent,
  })
  retention.start()
  await retention.idle()
  await stopping
  t.equal(calls, 2, 'no batch after stop()')
  t.equal(clock.timers.size, 0, 'and no next sweep')
})

t.test('eventLog.retentionDays: default 30, at least 1', async (t) => {
  t.equal(parseRelayConfig({ broker: { relayPassword: 'secret' } }).eventLog.retentionDays, 30)
  t.equal(parseRelayConfig({ broker: { relayPassword: 'secret' }, eventLog: { retentionDays: 7 } }).eventLog.retentionDays, 7)
  t.throws(() => parseRelayConfig({ broker: { relayPassword: 'secret' }, eventLog: { retentionDays: 0 } }), ConfigError)
  t.throws(() => parseRelayConfig({ broker: { relayPassword: 'secret' }, eventLog: { retentionDays: 1.5 } }), ConfigError)
})
