import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { lanIpv4Addresses } from '../../gateway/src/appliance/console-issue.js'
import { call, startBox, type BoxUnderTest } from '../box-ui/fixtures/box-harness.js'
import { sshPublicKey } from '../appliance/fixtures/ssh-keys.js'

const PASSWORD = 'correct horse battery'

async function signedIn(box: BoxUnderTest): Promise<{ cookie: string; csrf: string }> {
  const setup = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: box.setupCode() } })
  if (setup.status !== 200) throw new Error(`setup failed: ${setup.status} ${setup.text}`)
  return { cookie: String(setup.headers['set-cookie']).split(';')[0] ?? '', csrf: (JSON.parse(setup.text) as { csrfToken: string }).csrfToken }
}

const ROUTES: Array<[method: string, path: string, body?: unknown]> = [
  ['GET', '/api/network'],
  ['PUT', '/api/network', { mode: 'dhcp', dns: [], ntp: [] }],
  ['POST', '/api/network/confirm'],
  ['GET', '/api/ssh'],
  ['PUT', '/api/ssh', { enabled: false, keys: [] }],
]

t.test('network and SSH routes: anonymous 401, signed in without the CSRF token 403', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  for (const [method, path, body] of ROUTES) {
    const res = await call(`${box.origin}${path}`, { method, ...(body ? { body } : {}) })
    t.equal(res.status, 401, `${method} ${path} anonymous: 401`)
    t.match(JSON.parse(res.text), { error: { code: 'WEB_SIGNED_OUT', message: /sign in again/ } })
  }
  const { cookie } = await signedIn(box)
  for (const [method, path, body] of ROUTES.filter(([m]) => m !== 'GET')) {
    const res = await call(`${box.origin}${path}`, { method, headers: { cookie }, ...(body ? { body } : {}) })
    t.equal(res.status, 403, `${method} ${path} without x-csrf-token: 403`)
    t.match(JSON.parse(res.text), { error: { code: 'WEB_CSRF' } })
  }
  t.match(await readFile(join(box.dataDir, 'network', 'settings.json'), 'utf8').catch(() => 'none'), 'none', 'nothing was stored by the refused requests')
})

t.test('bad network input: 400 in words, nothing stored', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const { cookie, csrf } = await signedIn(box)
  const put = (body: unknown) => call(`${box.origin}/api/network`, { method: 'PUT', headers: { cookie, 'x-csrf-token': csrf }, body })
  const cases: Array<[unknown, RegExp]> = [
    [{ mode: 'static', address: '192.168.1.999', prefix: 24, dns: [], ntp: [] }, /not an IPv4 or IPv6 address/],
    [{ mode: 'static', address: '192.168.1.20', prefix: 40, dns: [], ntp: [] }, /out of range/],
    [{ mode: 'static', address: '192.168.1.20', prefix: 24, gateway: '192.168.1.1\nDNS=6.6.6.6', dns: [], ntp: [] }, /line breaks/],
    [{ mode: 'dhcp', dns: ['1.1.1.1', '1.0.0.1', '8.8.8.8', '8.8.4.4', '9.9.9.9'], ntp: [] }, /at most 4 DNS servers/],
    [{ mode: 'dhcp', dns: [], ntp: ['$(reboot)'] }, /remove spaces/],
    [{ mode: 'dhcp', dns: [], ntp: [], httpProxy: 'socks5://proxy:1080' }, /http:\/\//],
    [{ mode: 'bridge', dns: [], ntp: [] }, /not valid/],
  ]
  for (const [body, expected] of cases) {
    const res = await put(body)
    t.equal(res.status, 400, `${JSON.stringify(body).slice(0, 90)}: 400`)
    t.match((JSON.parse(res.text) as { error: { message: string } }).error.message, expected)
  }
  t.match(await readFile(join(box.dataDir, 'network', 'settings.json'), 'utf8').catch(() => 'none'), 'none', 'nothing stored')
})

t.test('a static address is stored as a trial and rendered; it is confirmed only at the new address', async (t) => {
  const lan = lanIpv4Addresses()[0]
  if (!lan) throw new Error('this test needs a non-loopback IPv4 address on the machine (the box is reached at it to confirm)')
  const box = await startBox({ build: false, host: '0.0.0.0' })
  t.teardown(() => box.close())
  const { cookie, csrf } = await signedIn(box)
  const headers = { cookie, 'x-csrf-token': csrf }
  const res = await call(`${box.origin}/api/network`, { method: 'PUT', headers, body: { mode: 'static', address: lan, prefix: 24, dns: ['192.0.2.53'], ntp: ['ntp.example.com'], httpProxy: 'http://proxy.example.com:3128' } })
  t.equal(res.status, 200, res.text)
  const view = JSON.parse(res.text) as { trial?: { until: string; confirmUrl: string } }
  t.match(view.trial?.confirmUrl, `https://${lan}:`, 'the page is told where to confirm')
  t.ok(Date.parse(view.trial?.until ?? '') > Date.now(), 'and until when')
  const pending = join(box.dataDir, 'network', 'pending')
  t.match(await readFile(join(pending, '10-pbxgw.network'), 'utf8'), `Address=${lan}/24`)
  t.match(await readFile(join(pending, 'timesyncd.conf.d', 'pbxgw.conf'), 'utf8'), 'NTP=ntp.example.com')
  t.match(await readFile(join(pending, 'proxy.env'), 'utf8'), 'https_proxy=http://proxy.example.com:3128')
  t.ok(await readFile(join(pending, 'apply-request'), 'utf8'), 'the apply request for root\'s path unit')

  const atOld = await call(`${box.origin}/api/network/confirm`, { method: 'POST', headers })
  t.equal(atOld.status, 409, 'confirming at 127.0.0.1 (not the new address) is refused')
  t.match(JSON.parse(atOld.text), { error: { code: 'NETWORK_CONFIRM_WRONG_ADDRESS', message: new RegExp(`Open the setup page at the new address https://${lan.replaceAll('.', '\\.')}:${new URL(box.origin).port}/`) } })
  const port = new URL(box.origin).port
  const atNew = await call(`https://${lan}:${port}/api/network/confirm`, { method: 'POST', headers: { ...headers, host: `${lan}:${port}` } })
  t.equal(atNew.status, 200, `confirmed at https://${lan}:${port}/: ${atNew.text}`)
  t.notOk((JSON.parse(atNew.text) as { trial?: unknown }).trial, 'no trial left')
  const again = await call(`https://${lan}:${port}/api/network/confirm`, { method: 'POST', headers: { ...headers, host: `${lan}:${port}` } })
  t.equal(again.status, 409, 'nothing left to confirm')
  t.match(JSON.parse(again.text), { error: { code: 'NETWORK_NO_TRIAL' } })
})

t.test('SSH: off by default; on only with good keys; bad keys refused in words', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const { cookie, csrf } = await signedIn(box)
  const headers = { cookie, 'x-csrf-token': csrf }
  const get = await call(`${box.origin}/api/ssh`, { method: 'GET', headers: { cookie } })
  t.same(JSON.parse(get.text), { enabled: false, keys: [] }, 'off by default')
  const put = (body: unknown) => call(`${box.origin}/api/ssh`, { method: 'PUT', headers, body })

  const ed25519 = await sshPublicKey('ed25519')
  const ecdsa = await sshPublicKey('ecdsa', 256)
  const rsaShort = await sshPublicKey('rsa', 2048)
  const [type, data] = ed25519.split(' ')
  const bad: Array<[unknown, RegExp]> = [
    [{ enabled: true, keys: [] }, /at least one public key/],
    [{ enabled: true, keys: [`command="reboot" ${ed25519}`] }, /options in front of the key/],
    [{ enabled: true, keys: [`no-pty,from="10.0.0.1" ${ed25519}`] }, /options in front of the key/],
    [{ enabled: true, keys: [rsaShort] }, /RSA key has 2048 bits; at least 3072/],
    [{ enabled: true, keys: [`ssh-dss ${data}`] }, /key type "ssh-dss" is not accepted/],
    [{ enabled: true, keys: [`${type} ${data?.slice(0, -8)}AAAAAAA=`] }, /damaged|does not hold|wrong size/],
    [{ enabled: true, keys: [`ecdsa-sha2-nistp256 ${data}`] }, /does not hold a ecdsa-sha2-nistp256 key/],
    [{ enabled: true, keys: [`${ed25519}\nssh-ed25519 ${data} second`] }, /one key per entry/],
    [{ enabled: true, keys: [`${type} ${data} evil;rm -rf /`] }, /comment after the key/],
    [{ enabled: true, keys: [ed25519, ed25519] }, /listed twice/],
    [{ enabled: 'yes', keys: [ed25519] }, /not valid/],
  ]
  for (const [body, expected] of bad) {
    const res = await put(body)
    t.equal(res.status, 400, `${JSON.stringify(body).slice(0, 80)}: 400`)
    t.match((JSON.parse(res.text) as { error: { message: string } }).error.message, expected)
  }
  t.match(await readFile(join(box.dataDir, 'ssh', 'authorized_keys'), 'utf8').catch(() => 'none'), 'none', 'nothing stored')

  const on = await put({ enabled: true, keys: [ed25519, `  ${ecdsa}  `] })
  t.equal(on.status, 200, on.text)
  t.same(JSON.parse(on.text), { enabled: true, keys: [ed25519, ecdsa] }, 'on, keys trimmed')
  t.equal(await readFile(join(box.dataDir, 'ssh', 'authorized_keys'), 'utf8'), `${ed25519}\n${ecdsa}\n`, 'authorized_keys for the apply unit')
  t.equal(await readFile(join(box.dataDir, 'ssh', 'apply-request'), 'utf8'), 'enabled\n')
  const off = await put({ enabled: false, keys: [ed25519] })
  t.equal(off.status, 200)
  t.equal(await readFile(join(box.dataDir, 'ssh', 'apply-request'), 'utf8'), 'disabled\n', 'off again')
})

t.test('a factory reset turns SSH off and the network back to DHCP, for root\'s units to apply', async (t) => {
  const box = await startBox({ build: false })
  t.teardown(() => box.close())
  const { cookie, csrf } = await signedIn(box)
  const headers = { cookie, 'x-csrf-token': csrf }
  t.equal((await call(`${box.origin}/api/ssh`, { method: 'PUT', headers, body: { enabled: true, keys: [await sshPublicKey('ed25519')] } })).status, 200)
  t.equal((await call(`${box.origin}/api/network`, { method: 'PUT', headers, body: { mode: 'static', address: '192.168.1.20', prefix: 24, dns: [], ntp: [] } })).status, 200)
  const reset = await call(`${box.origin}/api/factory-reset`, { method: 'POST', headers, body: { confirm: 'RESET' } })
  t.equal(reset.status, 200, reset.text)
  t.equal(await readFile(join(box.dataDir, 'ssh', 'apply-request'), 'utf8'), 'disabled\n', 'SSH off')
  t.equal(await readFile(join(box.dataDir, 'ssh', 'authorized_keys'), 'utf8'), '', 'no keys left')
  t.match(await readFile(join(box.dataDir, 'network', 'pending', '10-pbxgw.network'), 'utf8'), 'DHCP=yes', 'DHCP rendered')
  t.ok(await readFile(join(box.dataDir, 'network', 'pending', 'apply-request'), 'utf8'), 'and the apply unit asked')
})
