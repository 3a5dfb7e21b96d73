import { appendFile, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Clock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { OutboxStore, type OutboxOptions } from '../../gateway/src/outbox/outbox-store.js'
import { captureLogger } from '../helpers/capture-logger.js'

/** A clock the test moves by hand; timers never fire on their own. */
function manualClock(start = Date.UTC(2025, 0, 1)): Clock & { advance: (ms: number) => void } {
  let now = start
  return {
    now: () => now,
    setTimeout: (fn, ms) => {
      const timer = setTimeout(() => undefined, 0)
      clearTimeout(timer)
      void fn
      void ms
      return timer
    },
    clearTimeout: () => undefined,
    advance: (ms) => {
      now += ms
    },
  }
}

const root = await mkdtemp(join(tmpdir(), 'outbox-'))
t.teardown(() => rm(root, { recursive: true, force: true }))
let dirs = 0

function makeStore(options: Partial<OutboxOptions> = {}, clock: Clock = manualClock(), dir = join(root, `o${++dirs}`)) {
  const counters = new Counters()
  const { logger, lines } = captureLogger('debug')
  const store = new OutboxStore({ dir, ...options }, { logger, clock, counters })
  return { store, counters, lines, dir, clock }
}

const payload = (value: string) => Buffer.from(JSON.stringify({ value }))
const valueOf = (record: { payload: Buffer } | undefined) => (record ? (JSON.parse(record.payload.toString()) as { value: string }).value : undefined)

t.test('a newer put for the same key replaces the older one, on disk too', async (t) => {
  const { store, dir, counters } = makeStore()
  await store.open()
  await store.put('endpoint/c/201', { seq: 1, topic: 't/e', payload: payload('ringing') })
  await store.put('endpoint/c/202', { seq: 2, topic: 't/e', payload: payload('idle') })
  await store.put('endpoint/c/201', { seq: 3, topic: 't/e', payload: payload('busy') })
  t.equal(store.size, 2)
  t.equal(valueOf(store.latest('endpoint/c/201')), 'busy')
  t.equal(store.get(1), undefined, 'the replaced record is gone')
  t.equal(counters.get('outbox.coalesced'), 1)
  await store.close()

  const reopened = makeStore({}, manualClock(), dir).store
  await reopened.open()
  t.same(reopened.pending().map((r) => [r.key, r.seq, valueOf(r)]), [['endpoint/c/202', 2, 'idle'], ['endpoint/c/201', 3, 'busy']])
  await reopened.close()
})

t.test('the same store closed and opened again takes puts, and holds what the log holds', async (t) => {
  // The gateway closes and reopens its outbox when it restarts after an enrollment in the setup page.
  const { store } = makeStore()
  await store.open()
  await store.put('endpoint/c/201', { seq: 1, topic: 't/e', payload: payload('ringing') })
  await store.put('endpoint/c/202', { seq: 2, topic: 't/e', payload: payload('idle') })
  store.ack(2)
  await store.close()
  t.notOk(store.isOpen, 'closed')
  await t.rejects(store.put('endpoint/c/203', { seq: 3, topic: 't/e', payload: payload('busy') }), { code: 'OUTBOX_NOT_OPEN' }, 'a closed outbox refuses puts in words')
  await store.open()
  t.ok(store.isOpen, 'open again')
  t.same(store.pending().map((r) => [r.key, r.seq, valueOf(r)]), [['endpoint/c/201', 1, 'ringing']], 'what the log holds, nothing twice')
  await store.put('endpoint/c/201', { seq: 4, topic: 't/e', payload: payload('busy') })
  t.equal(valueOf(store.latest('endpoint/c/201')), 'busy', 'a put after the reopen is stored')
  t.equal(store.size, 1, 'and replaces the older record for its key')
  t.equal(store.stats().maxSeq, 4)
  await store.close()
})

t.test('pending() is in seq order, even when seqs arrive out of order', async (t) => {
  const { store, dir } = makeStore()
  await store.open()
  await Promise.all([
    store.put('a', { seq: 10, topic: 't', payload: payload('a10') }),
    store.put('b', { seq: 5, topic: 't', payload: payload('b5') }),
    store.put('c', { seq: 7, topic: 't', payload: payload('c7'), retain: true }),
  ])
  t.same(store.pending().map((r) => r.seq), [5, 7, 10])
  t.equal(store.get(7)?.retain, true, 'the retain flag is kept')
  await store.close()
  const reopened = makeStore({}, manualClock(), dir).store
  await reopened.open()
  t.same(reopened.pending().map((r) => r.seq), [5, 7, 10])
  t.equal(reopened.get(7)?.retain, true)
  t.equal(reopened.get(7)?.topic, 't')
  t.equal(reopened.stats().maxSeq, 10)
  await reopened.close()
})

t.test('an ack of an older seq does not remove the newer record for the key', async (t) => {
  const { store, dir, counters } = makeStore()
  await store.open()
  await store.put('endpoint/c/201', { seq: 1, topic: 't', payload: payload('ringing') })
  await store.put('endpoint/c/201', { seq: 2, topic: 't', payload: payload('busy') })
  t.equal(store.ack(1), false, 'seq 1 was superseded')
  t.equal(valueOf(store.latest('endpoint/c/201')), 'busy')
  t.equal(store.ack(2), true)
  t.equal(store.ack(2), false, 'a duplicate ack changes nothing')
  t.equal(store.size, 0)
  t.equal(counters.get('outbox.acked'), 1)
  await store.put('endpoint/c/202', { seq: 3, topic: 't', payload: payload('idle') })
  await store.close()
  const reopened = makeStore({}, manualClock(), dir).store
  await reopened.open()
  t.same(reopened.pending().map((r) => r.key), ['endpoint/c/202'], 'the ack was written: only the unacknowledged record comes back')
  await reopened.close()
})

t.test('bound by count: the oldest go, counted and logged', async (t) => {
  const { store, counters, lines, dir } = makeStore({ maxRecords: 5 })
  await store.open()
  for (let i = 1; i <= 8; i++) await store.put(`k${i}`, { seq: i, topic: 't', payload: payload(`v${i}`) })
  t.same(store.pending().map((r) => r.seq), [4, 5, 6, 7, 8])
  t.equal(counters.get('outbox.dropped_count'), 3)
  const warn = lines().find((l) => l.level === 40 && /outbox bound reached/.test(l.msg))
  t.ok(warn, 'a warning says the bound was reached')
  t.match(warn?.msg, /raise outbox\.maxBytes \/ maxRecords/, 'and what to do')
  await store.close()
  const reopened = makeStore({ maxRecords: 5 }, manualClock(), dir).store
  await reopened.open()
  t.same(reopened.pending().map((r) => r.seq), [4, 5, 6, 7, 8], 'the drops were written')
  await reopened.close()
})

t.test('bound by size: the oldest go until the live bytes fit', async (t) => {
  const { store, counters } = makeStore({ maxBytes: 1000 })
  await store.open()
  const big = Buffer.alloc(200, 'x')
  for (let i = 1; i <= 10; i++) await store.put(`k${i}`, { seq: i, topic: 'topic', payload: big })
  t.ok(store.stats().liveBytes <= 1000, `live bytes ${store.stats().liveBytes} within the bound`)
  t.ok(store.size >= 3 && store.size < 10, `kept ${store.size}`)
  t.equal(store.pending().at(-1)?.seq, 10, 'the newest is kept')
  t.equal(counters.get('outbox.dropped_size'), 10 - store.size)
  await store.close()
})

t.test('bound by age: records older than maxAge go, at put and at open', async (t) => {
  const clock = manualClock()
  const { store, counters, dir } = makeStore({ maxAgeMs: 60_000 }, clock)
  await store.open()
  await store.put('old', { seq: 1, topic: 't', payload: payload('old') })
  clock.advance(30_000)
  await store.put('middle', { seq: 2, topic: 't', payload: payload('middle') })
  clock.advance(31_000)
  await store.put('new', { seq: 3, topic: 't', payload: payload('new') })
  t.same(store.pending().map((r) => r.key), ['middle', 'new'])
  t.equal(counters.get('outbox.dropped_age'), 1)
  await store.close()

  clock.advance(40_000)
  const again = makeStore({ maxAgeMs: 60_000 }, clock, dir)
  await again.store.open()
  t.same(again.store.pending().map((r) => r.key), ['new'], 'middle expired while the box was off')
  t.equal(again.counters.get('outbox.dropped_age'), 1)
  await again.store.close()
})

t.test('group commit: 10,000 puts cost a handful of fsyncs', async (t) => {
  const { store, counters } = makeStore()
  await store.open()
  const puts: Array<Promise<void>> = []
  for (let i = 1; i <= 10_000; i++) puts.push(store.put(`endpoint/c/${i}`, { seq: i, topic: 'pbxgw/v1/gw/evt/endpoint', payload: payload(`state-${i}`) }))
  await Promise.all(puts)
  t.equal(store.size, 10_000)
  t.ok(counters.get('outbox.fsyncs') <= 5, `${counters.get('outbox.fsyncs')} fsyncs`)
  await store.close()
})

t.test('a torn tail is cut off with a warning; the records before it are intact', async (t) => {
  const { store, dir } = makeStore()
  await store.open()
  for (let i = 1; i <= 3; i++) await store.put(`k${i}`, { seq: i, topic: 't', payload: payload(`v${i}`) })
  await store.close()
  const file = join(dir, 'outbox.log')
  const full = (await stat(file)).size
  await store.close()

  // A power cut in the middle of the fourth record: its header and half its body made it.
  const fourth = makeStore({}, manualClock(), dir).store
  await fourth.open()
  await fourth.put('k4', { seq: 4, topic: 't', payload: payload('v4') })
  await fourth.close()
  const withFourth = (await stat(file)).size
  await truncate(file, full + Math.floor((withFourth - full) / 2))

  const reopened = makeStore({}, manualClock(), dir)
  await reopened.store.open()
  t.same(reopened.store.pending().map((r) => valueOf(r)), ['v1', 'v2', 'v3'])
  const warn = reopened.lines().find((l) => l.level === 40 && /torn or corrupt record/.test(l.msg))
  t.ok(warn, 'warned')
  t.equal(warn?.droppedBytes, Math.floor((withFourth - full) / 2), 'with how many bytes were dropped')
  t.equal(reopened.counters.get('outbox.truncated_bytes'), Math.floor((withFourth - full) / 2))
  t.equal((await stat(file)).size, full, 'the file is cut back to the last whole record')
  // Appends after the cut land behind a clean record.
  await reopened.store.put('k5', { seq: 5, topic: 't', payload: payload('v5') })
  await reopened.store.close()
  const last = makeStore({}, manualClock(), dir)
  await last.store.open()
  t.same(last.store.pending().map((r) => valueOf(r)), ['v1', 'v2', 'v3', 'v5'])
  t.equal(last.lines().filter((l) => l.level === 40).length, 0, 'no further warning')
  await last.store.close()
})

t.test('garbled bytes in the last record (CRC mismatch) and trailing garbage are cut off', async (t) => {
  const { store, dir } = makeStore()
  await store.open()
  for (let i = 1; i <= 3; i++) await store.put(`k${i}`, { seq: i, topic: 't', payload: payload(`v${i}`) })
  await store.close()
  const file = join(dir, 'outbox.log')
  const bytes = await readFile(file)
  const garbled = Buffer.from(bytes)
  garbled[garbled.length - 3] = (garbled[garbled.length - 3] ?? 0) ^ 0xff
  await writeFile(file, garbled)
  const a = makeStore({}, manualClock(), dir)
  await a.store.open()
  t.same(a.store.pending().map((r) => valueOf(r)), ['v1', 'v2'], 'the garbled third record is dropped')
  t.match(a.lines().find((l) => l.level === 40)?.reason, /CRC mismatch/)
  await a.store.close()

  await appendFile(file, Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x01]))
  const b = makeStore({}, manualClock(), dir)
  await b.store.open()
  t.same(b.store.pending().map((r) => valueOf(r)), ['v1', 'v2'], 'random trailing bytes are dropped too')
  t.equal(b.lines().find((l) => l.level === 40)?.droppedBytes, 5)
  await b.store.close()
})

t.test('a file that is not an outbox log is moved aside, not trusted', async (t) => {
  const dir = join(root, `o${++dirs}`)
  const { mkdir } = await import('node:fs/promises')
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'outbox.log'), 'this is not an outbox log at all')
  const { store, lines, counters } = makeStore({}, manualClock(), dir)
  await store.open()
  t.equal(store.size, 0)
  t.equal(counters.get('outbox.unreadable_files'), 1)
  t.match(lines().find((l) => l.level === 50)?.msg, /no valid header: moved aside/)
  t.ok((await readdir(dir)).some((name) => name.startsWith('outbox.log.unreadable-')), 'kept for inspection')
  await store.put('k', { seq: 1, topic: 't', payload: payload('v') })
  await store.close()
})

t.test('compaction rewrites the live records when dead ones dominate', async (t) => {
  const { store, dir, counters } = makeStore({ compactMinBytes: 64 * 1024 })
  await store.open()
  const puts: Array<Promise<void>> = []
  for (let i = 1; i <= 3000; i++) puts.push(store.put(`k${i}`, { seq: i, topic: 'pbxgw/v1/gw/evt/endpoint', payload: Buffer.alloc(100, 'p') }))
  await Promise.all(puts)
  const before = store.stats().fileBytes
  for (let i = 1; i <= 2990; i++) store.ack(i)
  await store.flush()
  t.ok(counters.get('outbox.compactions') >= 1, 'compacted by itself')
  const auto = store.stats().fileBytes
  t.ok(auto < before / 4, `file shrank by itself from ${before} to ${auto} bytes`)
  await store.compact()
  const after = store.stats().fileBytes
  t.ok(after < 2000, `an explicit compaction leaves only the 10 live records: ${after} bytes`)
  t.equal((await stat(join(dir, 'outbox.log'))).size, after)
  t.notOk((await readdir(dir)).includes('outbox.log.tmp'), 'no temp file left')
  await store.put('k-late', { seq: 5000, topic: 't', payload: payload('late') })
  await store.close()
  const reopened = makeStore({}, manualClock(), dir).store
  await reopened.open()
  t.same(reopened.pending().map((r) => r.seq), [2991, 2992, 2993, 2994, 2995, 2996, 2997, 2998, 2999, 3000, 5000])
  await reopened.close()
})

t.test('misuse gets a clear error, not a crash', async (t) => {
  const { store } = makeStore()
  await t.rejects(store.put('k', { seq: 1, topic: 't', payload: payload('v') }), { code: 'OUTBOX_NOT_OPEN' })
  await store.open()
  await t.rejects(store.put('k', { seq: -1, topic: 't', payload: payload('v') }), { code: 'OUTBOX_BAD_RECORD' })
  await t.rejects(store.put('k', { seq: 1.5, topic: 't', payload: payload('v') }), { code: 'OUTBOX_BAD_RECORD' })
  t.equal(store.ack(99), false)
  await store.close()
  await store.close()
  t.equal(store.ack(1), false)
})
