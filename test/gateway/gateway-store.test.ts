import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { GatewayStore } from '../../gateway/src/core/gateway-store.js'

t.test('seq only grows across restarts, owned DND persists', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-store-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'sub', 'state.json')
  const first = new GatewayStore(file)
  await first.open()
  const seen: number[] = []
  for (let i = 0; i < 1500; i++) seen.push(first.nextSeq())
  t.ok(seen.every((v, i) => i === 0 || v > seen[i - 1]!), 'strictly increasing within a run')
  await first.setOwnedDnd(['osbiz/202', 'osbiz/201'])
  await first.flush()
  const onDisk = JSON.parse(await readFile(file, 'utf8')) as { seqReserved: number; ownedDnd: string[] }
  t.ok(onDisk.seqReserved >= seen.at(-1)!, 'the reservation on disk covers every number handed out')
  t.same(onDisk.ownedDnd, ['osbiz/201', 'osbiz/202'])

  // A crash: nothing else written. The next run starts above everything the first handed out.
  const second = new GatewayStore(file)
  await second.open()
  t.ok(second.nextSeq() > seen.at(-1)!, 'after a restart seq continues above the last one used')
  t.same(second.ownedDnd, ['osbiz/201', 'osbiz/202'])
})
