import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { loadSealer, SealError, Sealer } from '../../cloud-relay/src/secrets/sealer.js'
import { BoxSealer, BoxSealError } from '../../gateway/src/identity/box-sealer.js'
import type { TapTest } from '../helpers/tap-types.js'

async function tempDir(t: TapTest): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sealing-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** The same sealed value with its GCM tag cut to `bytes` (Node accepts 4..16-byte tags unless told the length). */
function truncateTag(sealed: string, bytes: number): string {
  const [version, iv, tag, data] = sealed.split('.')
  return [version, iv, Buffer.from(tag!, 'base64url').subarray(0, bytes).toString('base64url'), data].join('.')
}

t.test('a sealed secret with a shortened GCM tag is refused (a 4-byte tag is forged in 2^32 tries)', async (t) => {
  const relay = new Sealer(randomBytes(32), 'test key')
  const sealed = relay.seal('refresh-token-cache', 'msal-cache')
  t.equal(relay.openText(sealed, 'msal-cache'), 'refresh-token-cache')
  for (const bytes of [4, 8, 12, 15]) t.throws(() => relay.open(truncateTag(sealed, bytes), 'msal-cache'), SealError, `relay: ${bytes}-byte tag refused`)
  const [v, , tag, data] = sealed.split('.')
  t.throws(() => relay.open([v, randomBytes(16).toString('base64url'), tag, data].join('.'), 'msal-cache'), SealError, 'a 16-byte nonce is refused')

  const dir = await tempDir(t)
  const box = await BoxSealer.open(join(dir, 'seal.key'))
  const boxSealed = box.seal('-----BEGIN PRIVATE KEY-----', 'identity-key')
  t.equal(box.open(boxSealed, 'identity-key').toString('utf8'), '-----BEGIN PRIVATE KEY-----')
  for (const bytes of [4, 8, 12, 15]) t.throws(() => box.open(truncateTag(boxSealed, bytes), 'identity-key'), BoxSealError, `box: ${bytes}-byte tag refused`)
})

t.test('the relay\'s seal key file: created 0600 in a 0700 folder, refused when others can read it', async (t) => {
  const dir = await tempDir(t)
  const keyFile = join(dir, 'relay', 'seal.key')
  const first = await loadSealer({ keyFile })
  t.equal((await stat(keyFile)).mode & 0o777, 0o600)
  t.equal((await stat(join(dir, 'relay'))).mode & 0o777, 0o700, 'the folder the relay made for its key is private')

  await chmod(keyFile, 0o644)
  await t.rejects(loadSealer({ keyFile }), { message: `the seal key file ${keyFile} can be read by other users (mode 644): run "chmod 600 ${keyFile}" and start the relay again` })
  await chmod(keyFile, 0o600)
  const again = await loadSealer({ keyFile })
  t.equal(again.openText(first.seal('x', 'p'), 'p'), 'x', 'the same key once it is private')

  const given = join(dir, 'given.key')
  await writeFile(given, `${randomBytes(32).toString('base64')}\n`, { mode: 0o640 })
  await chmod(given, 0o640)
  await t.rejects(loadSealer({ keyFile: given }), /chmod 600/)
})
