import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createRelayCa, RelayPki } from '../../cloud-relay/src/pki/relay-pki.js'
import type { TapTest } from '../helpers/tap-types.js'
import { startAdapter, synchronised } from './fixtures/harness.js'

async function pbxCertificate(): Promise<{ caPem: string; cert: string; key: string; sha256: string }> {
  const pki = await RelayPki.load(await createRelayCa('Test PBX CA'))
  const issued = await pki.issueServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  return { caPem: pki.caCertPem, cert: issued.certPem, key: issued.keyPem, sha256: issued.fingerprint256 }
}

async function caFile(t: TapTest, pem: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'inno-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'pbx-ca.pem')
  await writeFile(file, pem)
  return file
}

const offline = (harness: Awaited<ReturnType<typeof startAdapter>>) =>
  harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { what: 'offline' })

t.test('wss with the PBX CA in caFile: connects and works', async (t) => {
  const pbx = await pbxCertificate()
  const harness = await startAdapter(t, { sim: { tls: { cert: pbx.cert, key: pbx.key } }, config: { tls: true, caFile: await caFile(t, pbx.caPem) } })
  await synchronised(harness, ['201', '202', '203'])
  t.same(await harness.adapter.setDnd('201', true), { dnd: true })
  t.equal(harness.sim.getDnd('201'), true)
})

t.test('wss without trusting the CA: refused, and the reason says which option to set', async (t) => {
  const pbx = await pbxCertificate()
  const harness = await startAdapter(t, { sim: { tls: { cert: pbx.cert, key: pbx.key } }, config: { tls: true } })
  t.match(await offline(harness), { reason: /the PBX certificate is not trusted .*set caFile to the CA that signed the PBX certificate, or certificateSha256/ })
  t.equal(harness.sim.stats.connections, 0, 'no WebSocket was opened')
})

t.test('a pinned certificate is trusted whoever signed it (colons and case do not matter)', async (t) => {
  const pbx = await pbxCertificate()
  const pin = pbx.sha256.toUpperCase().match(/../g)?.join(':')
  const harness = await startAdapter(t, { sim: { tls: { cert: pbx.cert, key: pbx.key } }, config: { tls: true, certificateSha256: pin } })
  await synchronised(harness, ['201', '202', '203'])
  t.pass('connected with the pin alone')
})

t.test('a different certificate than the pinned one: nothing is sent, the reason names the certificate seen', async (t) => {
  const pbx = await pbxCertificate()
  const other = await pbxCertificate()
  const harness = await startAdapter(t, { sim: { tls: { cert: pbx.cert, key: pbx.key } }, config: { tls: true, certificateSha256: other.sha256 } })
  t.match(await offline(harness), { reason: new RegExp(`not the pinned one \\(it has SHA-256 ${pbx.sha256}\\).*update certificateSha256`) })
  t.equal(harness.sim.stats.loginsAccepted + harness.sim.stats.loginsRefused, 0, 'no login was attempted')
})

t.test('an unreadable caFile is reported as such', async (t) => {
  const harness = await startAdapter(t, { config: { tls: true, caFile: '/nonexistent/pbx-ca.pem' } })
  t.match(await offline(harness), { reason: /cannot read caFile \/nonexistent\/pbx-ca.pem.*fix the path/ })
})
