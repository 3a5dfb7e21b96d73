import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createCsr } from '../../cloud-relay/src/pki/relay-pki.js'
import { runIdentityCommand } from '../../gateway/src/identity/cli.js'
import { BoxSealError } from '../../gateway/src/identity/box-sealer.js'
import { createBoxCsr } from '../../gateway/src/identity/box-csr.js'
import { factoryReset, IdentityError, IdentityStore, type IssuedIdentity } from '../../gateway/src/identity/identity-store.js'
import { httpsRelay, relaySide } from './fixtures/enrollment-world.js'
import type { TapTest } from '../helpers/tap-types.js'

async function tempDir(t: TapTest): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'box-id-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

t.test('the box key: made at first boot, sealed, 0600, the same after a restart', async (t) => {
  const dir = await tempDir(t)
  const store = new IdentityStore(dir)
  const key = await store.ensureKey()
  t.match(key, /BEGIN PRIVATE KEY/)
  const sealed = await readFile(join(dir, 'identity', 'key.sealed'), 'utf8')
  t.notMatch(sealed, /PRIVATE KEY/, 'never on disk in the clear')
  t.equal((await stat(join(dir, 'identity', 'seal.key'))).mode & 0o777, 0o600)
  t.equal((await stat(join(dir, 'identity', 'key.sealed'))).mode & 0o777, 0o600)
  t.equal(await new IdentityStore(dir).ensureKey(), key, 'a new process reads the same key')
  t.equal(await store.load(), undefined, 'not enrolled yet')
  // The box's CSR is one the relay CA accepts, for the box's key.
  const side = await relaySide('pglite')
  t.teardown(() => side.close())
  const inspected = await side.pki.inspectCsr(await createBoxCsr(key, 'pbx-presence-gateway'))
  t.equal(inspected.publicKeySha256, (await side.pki.inspectCsr(await createCsr('other-name', key))).publicKeySha256)

  await writeFile(join(dir, 'identity', 'seal.key'), `${Buffer.alloc(32, 1).toString('base64')}\n`)
  await t.rejects(new IdentityStore(dir).ensureKey(), BoxSealError)
  await t.rejects(new IdentityStore(dir).ensureKey(), /factory-reset --yes/)
})

t.test('identity survives restart; interrupted saves roll back or forward; factory reset wipes it', async (t) => {
  const dir = await tempDir(t)
  const side = await relaySide('pglite')
  t.teardown(() => side.close())
  const store = new IdentityStore(dir)
  const key = await store.ensureKey()
  const { code } = await side.service.createGateway('contoso', { id: 'gw-disk' })
  const issued: IssuedIdentity = await side.service.enroll({ code, csrPem: await createBoxCsr(key, 'x'), remoteAddress: '127.0.0.1' })
  const saved = await store.save(issued, 'https://relay.test', '2026-01-01T00:00:00.000Z')
  t.equal(saved.gatewayId, 'gw-disk')
  const restarted = await new IdentityStore(dir).load()
  t.equal(restarted?.certPem, saved.certPem)
  t.equal(restarted?.keyPem, key)
  t.equal(restarted?.relayUrl, 'https://relay.test')
  t.same(JSON.parse(await readFile(join(dir, 'identity', 'enrollment.json'), 'utf8')).brokerUrls, issued.brokerUrls)

  // A renewal cut short before enrollment.json.new was written: the old identity stands, strays are removed.
  const renewed = await side.service.renew({ certificatePem: saved.certPem, csrPem: await createBoxCsr(key, 'gw-disk') })
  await writeFile(join(dir, 'identity', 'cert.pem.new'), renewed.certificatePem)
  t.equal((await new IdentityStore(dir).load())?.certPem, saved.certPem)
  t.notOk((await readdir(join(dir, 'identity'))).includes('cert.pem.new'))
  // Cut short after every .new file was written and cert.pem already renamed: the next load completes it.
  await writeFile(join(dir, 'identity', 'cert.pem'), renewed.certificatePem)
  await writeFile(join(dir, 'identity', 'ca.pem.new'), renewed.caChainPem)
  await writeFile(join(dir, 'identity', 'enrollment.json.new'), JSON.stringify({ ...JSON.parse(await readFile(join(dir, 'identity', 'enrollment.json'), 'utf8')), notAfter: renewed.notAfter }))
  const completed = await new IdentityStore(dir).load()
  t.equal(completed?.certPem.trim(), renewed.certificatePem.trim())
  t.equal(completed?.notAfter, new Date(renewed.notAfter).toISOString())
  t.same((await readdir(join(dir, 'identity'))).filter((n) => n.endsWith('.new')), [])

  await writeFile(join(dir, 'identity', 'enrollment.json'), '{ torn')
  await t.rejects(new IdentityStore(dir).load(), IdentityError)
  await t.rejects(new IdentityStore(dir).load(), /factory-reset --yes/)

  await mkdir(join(dir, 'outbox'))
  await writeFile(join(dir, 'outbox', 'segment-1'), 'x')
  await writeFile(join(dir, 'state.json'), '{}')
  const result = await factoryReset(dir)
  t.same(result.removed.sort(), ['identity', 'outbox', 'state.json'])
  t.same(await readdir(dir), [])
  t.equal(await new IdentityStore(dir).load(), undefined, 'enrolls from scratch')
  t.not(await new IdentityStore(dir).ensureKey(), key, 'with a new key')
  await t.rejects(factoryReset('/'), /refusing to wipe/)
  await t.rejects(factoryReset(process.cwd()), /refusing to wipe/)

  // The service user's home is its data folder on the appliance (pbxgw) and in the container (/data): the reset
  // must work there (the booted image answered 500), and still refuse a home that holds anything else.
  const home = process.env.HOME
  t.teardown(() => { process.env.HOME = home })
  process.env.HOME = dir
  await mkdir(join(dir, 'web'))
  await writeFile(join(dir, 'web', 'admin.json'), '{}')
  await writeFile(join(dir, 'connectors.json.tmp-1'), '{}')
  // The update agent's folder, which the appliance's config turns on (the booted image answered 500 again without it).
  await mkdir(join(dir, 'update'))
  await writeFile(join(dir, 'update', 'update-state.json'), '{}')
  t.same((await factoryReset(dir)).removed.sort(), ['connectors.json.tmp-1', 'identity', 'update', 'web'], 'a home holding only the gateway\'s files is wiped')
  t.same(await readdir(dir), [])
  await writeFile(join(dir, 'state.json'), '{}')
  await writeFile(join(dir, '.bashrc'), '# a person\'s home')
  await t.rejects(factoryReset(dir), /refusing to wipe/, 'a home with anything else in it is refused')
  t.same((await readdir(dir)).sort(), ['.bashrc', 'state.json'], 'and nothing was removed')
})

t.test('command line: enroll and factory-reset print progress and the result in words', async (t) => {
  const dir = await tempDir(t)
  const side = await relaySide('pglite')
  const relay = await httpsRelay(side)
  t.teardown(async () => {
    await relay.close()
    await side.close()
  })
  const { code } = await side.service.createGateway('contoso', { id: 'gw-cli' })
  const configFile = join(dir, 'gateway.json')
  const dataDir = join(dir, 'data')
  await writeFile(configFile, JSON.stringify({ dataDir, relay: { url: 'mqtts://relay.test:8883', enrollUrl: relay.url, caFingerprint: side.pki.caFingerprint256.match(/../g)?.join(':').toUpperCase() } }))
  const lines: string[] = []
  const out = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(`ERR ${l}`) }
  t.equal(await runIdentityCommand(['enroll', '--config', configFile, '--code', code], { out }), 0, lines.join('\n'))
  t.match(lines.join('\n'), /Enrolled as gateway gw-cli of tenant contoso/)
  t.notMatch(lines.join('\n'), new RegExp(code.slice(5, 9)), 'the code is masked')
  lines.length = 0
  t.equal(await runIdentityCommand(['enroll', '--config', configFile, '--code', code], { out }), 1)
  t.match(lines.join('\n'), /ERR Enrollment failed \(ENROLL_CODE_USED\)/)
  lines.length = 0
  t.equal(await runIdentityCommand(['enroll', '--config', configFile], { out }), 2)
  t.match(lines.join('\n'), /needs --code/)
  lines.length = 0
  t.equal(await runIdentityCommand(['factory-reset', '--config', configFile], { out }), 2)
  t.match(lines.join('\n'), /gateway gw-cli of tenant contoso[\s\S]*Nothing was removed/)
  t.ok((await new IdentityStore(dataDir).load())?.gatewayId, 'still enrolled without --yes')
  lines.length = 0
  t.equal(await runIdentityCommand(['factory-reset', '--yes', '--data-dir', dataDir], { out }), 0)
  t.match(lines.join('\n'), /Factory reset done/)
  t.equal(await new IdentityStore(dataDir).load(), undefined)
})
