import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { openSqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { GatewayStore } from '../../gateway/src/core/gateway-store.js'
import { OutboxStore } from '../../gateway/src/outbox/outbox-store.js'

const logger = pino({ level: 'silent' })
const modeOf = async (path: string) => (await stat(path)).mode & 0o777

t.test('the folders the relay and the box make for their data are private (0700)', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'file-modes-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))

  // The relay's PGlite folder holds sealed token caches, the sealed CA key and password hashes.
  const db = await openSqlClient({ dataDir: join(root, 'relay', 'pglite') }, logger)
  await db.close()
  t.equal(await modeOf(join(root, 'relay')), 0o700, 'relay data folder')
  t.equal(await modeOf(join(root, 'relay', 'pglite')), 0o700, 'PGlite folder')

  // The box's dataDir holds its identity, PBX credentials and everyone's presence: whichever store opens first makes it.
  const state = new GatewayStore(join(root, 'box-a', 'state.json'))
  await state.open()
  t.equal(await modeOf(join(root, 'box-a')), 0o700, 'box dataDir made by the state file')
  const outbox = new OutboxStore({ dir: join(root, 'box-b', 'outbox') }, { logger, clock: systemClock, counters: new Counters() })
  await outbox.open()
  await outbox.close()
  t.equal(await modeOf(join(root, 'box-b')), 0o700, 'box dataDir made by the outbox')
  t.equal(await modeOf(join(root, 'box-b', 'outbox')), 0o700, 'outbox folder')
})
