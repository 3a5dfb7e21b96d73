import { X509Certificate } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { request } from 'undici'
import { BoxEnrollmentError, EnrollmentClient, type RelayConnectionOptions } from '../../gateway/src/identity/enrollment-client.js'
import { IdentityStore, loadUplinkIdentity } from '../../gateway/src/identity/identity-store.js'
import { CertificateRenewal } from '../../gateway/src/identity/renewal.js'
import type { Clock } from '#kernel/clock.js'
import { closedPort } from '../helpers/free-port.js'
import { API_TOKEN, DAY_MS, ManualClock, ShiftedClock, httpsRelay, relaySide } from './fixtures/enrollment-world.js'

const silent = pino({ level: 'silent' })
const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }

async function boxFailure(promise: Promise<unknown>): Promise<BoxEnrollmentError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof BoxEnrollmentError) return err
    throw err
  }
  throw new Error('expected the box to fail, but it succeeded')
}

t.test('box ↔ relay over real HTTPS (PGlite)', async (t) => {
  const side = await relaySide('pglite')
  const relay = await httpsRelay(side)
  const dirs: string[] = []
  t.teardown(async () => {
    await relay.close()
    await side.close()
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })
  const newBox = async (options: RelayConnectionOptions = {}, clock: Clock = new ShiftedClock()) => {
    const dir = await mkdtemp(join(tmpdir(), 'box-'))
    dirs.push(dir)
    const store = new IdentityStore(dir)
    return { dir, store, client: new EnrollmentClient({ store, clock, logger: silent }, { relayUrl: relay.url, caFingerprint: side.pki.caFingerprint256, ...options }) }
  }
  const adminCreate = async (id: string): Promise<string> => {
    const res = await request(`${relay.url}/api/v1/tenants/contoso/gateways`, { method: 'POST', headers: auth, body: JSON.stringify({ id, name: id }), dispatcher: insecure })
    const body = (await res.body.json()) as { code: string }
    if (res.statusCode !== 201) throw new Error(`create gateway: ${res.statusCode} ${JSON.stringify(body)}`)
    return body.code
  }
  // Only for the admin calls from the test itself; the box never does this.
  const { Agent } = await import('undici')
  const insecure = new Agent({ connect: { ca: side.pki.caCertPem } })
  t.teardown(() => insecure.close())

  await t.test('happy path: admin API code → box enrolls with the CA pin → identity on disk, verified by the CA', async (t) => {
    const code = await adminCreate('gw-box1')
    const box = await newBox()
    const identity = await box.client.enroll({ code })
    t.equal(identity.gatewayId, 'gw-box1')
    t.equal(identity.tenantId, 'contoso')
    const cert = new X509Certificate(identity.certPem)
    t.ok(cert.checkIssued(new X509Certificate(side.pki.caCertPem)) && cert.verify(new X509Certificate(side.pki.caCertPem).publicKey), 'signed by the relay CA')
    t.match(cert.subject, /CN=gw-box1/)
    t.equal(side.pki.verifyClientCertificate(identity.certPem).commonName, 'gw-box1')
    const uplink = await loadUplinkIdentity(box.dir)
    t.equal(uplink?.gatewayId, 'gw-box1')
    t.same(uplink?.brokerUrls, ['mqtts://relay.test:8883', 'wss://relay.test:443/mqtt'])
    t.ok(uplink && new X509Certificate(uplink.tls.certPem).checkPrivateKey((await import('node:crypto')).createPrivateKey(uplink.tls.keyPem)), 'the uplink gets the matching key')
    const res = await request(`${relay.url}/api/v1/gateways/gw-box1/identity`, { headers: auth, dispatcher: insecure })
    const view = (await res.body.json()) as { state: string; tenantId: string; certificateSerial: string }
    t.equal(view.state, 'enrolled')
    t.equal(view.certificateSerial, side.pki.verifyClientCertificate(identity.certPem).serial)

    // Reusing the code: 409 in words, from a second box.
    const other = await newBox()
    const reused = await boxFailure(other.client.enroll({ code }))
    t.equal(reused.code, 'ENROLL_CODE_USED')
    t.equal(reused.status, 409)
    t.match(reused.message, /used already/)
    t.notOk(reused.retryable)
  })

  await t.test('unknown code 401, expired code 410, revoked gateway 403, new code refused', async (t) => {
    const box = await newBox()
    const unknown = await boxFailure(box.client.enroll({ code: '7777-7777-7777-7777' }))
    t.equal(unknown.code, 'ENROLL_CODE_UNKNOWN')
    t.equal(unknown.status, 401)
    const code = await adminCreate('gw-box2')
    side.clock.offsetMs = 24 * 3600_000 + 60_000
    // The relay's clock moved a day on: the box's clock check would object, so the box moves too.
    const late = await newBox({}, new ShiftedClock(side.clock.offsetMs))
    const expired = await boxFailure(late.client.enroll({ code }))
    t.equal(expired.code, 'ENROLL_CODE_EXPIRED')
    t.equal(expired.status, 410)
    t.match(expired.message, /create a new code in the console/)
    side.clock.offsetMs = 0
    const fresh = await request(`${relay.url}/api/v1/gateways/gw-box2/enrollment-codes`, { method: 'POST', headers: { authorization: auth.authorization }, dispatcher: insecure })
    t.equal(fresh.statusCode, 201)
    const { code: pending } = (await fresh.body.json()) as { code: string }
    const revoke = await request(`${relay.url}/api/v1/gateways/gw-box2/revoke`, { method: 'POST', headers: auth, body: JSON.stringify({ reason: 'sold the site' }), dispatcher: insecure })
    t.equal(revoke.statusCode, 200)
    t.equal(((await revoke.body.json()) as { state: string }).state, 'revoked')
    const revoked = await boxFailure(box.client.enroll({ code: pending }))
    t.equal(revoked.code, 'ENROLL_GATEWAY_REVOKED')
    t.equal(revoked.status, 403)
    const refused = await request(`${relay.url}/api/v1/gateways/gw-box2/enrollment-codes`, { method: 'POST', headers: { authorization: auth.authorization }, dispatcher: insecure })
    t.equal(refused.statusCode, 403)
    t.equal(((await refused.body.json()) as { error: { code: string } }).error.code, 'ENROLL_GATEWAY_REVOKED')
    const noBearer = await request(`${relay.url}/api/v1/gateways/gw-box2/identity`, { dispatcher: insecure })
    t.equal(noBearer.statusCode, 401, 'admin routes need the bearer token')
    await noBearer.body.dump()
  })

  await t.test('trust: pin mismatch refused, no pin → unknown CA advice, refused port, server-certificate pin works', async (t) => {
    const code = await adminCreate('gw-box4')
    const wrongPin = await newBox({ caFingerprint: 'ab'.repeat(32) })
    const mismatch = await boxFailure(wrongPin.client.enroll({ code }))
    t.equal(mismatch.code, 'BOX_TLS_PIN_MISMATCH')
    t.match(mismatch.message, /do not match relay\.caFingerprint/)
    const noPin = await newBox({ caFingerprint: undefined })
    const unknownCa = await boxFailure(noPin.client.enroll({ code }))
    t.equal(unknownCa.code, 'BOX_TLS_UNKNOWN_CA')
    t.match(unknownCa.message, /set relay\.caFingerprint to the pin shown in the console/)
    const badPin = await newBox({ caFingerprint: 'not-a-pin' })
    t.equal((await boxFailure(badPin.client.enroll({ code }))).code, 'BOX_BAD_PIN')
    const refusedBox = await newBox({ relayUrl: `https://127.0.0.1:${await closedPort()}` })
    const refused = await boxFailure(refusedBox.client.enroll({ code }))
    t.equal(refused.code, 'BOX_REFUSED')
    t.ok(refused.retryable)
    const plain = await newBox({ relayUrl: 'http://127.0.0.1:1' })
    t.equal((await boxFailure(plain.client.enroll({ code }))).code, 'BOX_BAD_URL')
    // Pinning the relay's server certificate (not its CA) works as well.
    const socket = await import('node:tls').then((tls) => new Promise<import('node:tls').TLSSocket>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: Number(new URL(relay.url).port), rejectUnauthorized: false }, () => resolve(s))
    }))
    const leafPin = socket.getPeerCertificate().fingerprint256
    socket.destroy()
    const leafBox = await newBox({ caFingerprint: leafPin })
    const identity = await leafBox.client.enroll({ code })
    t.equal(identity.gatewayId, 'gw-box4', 'the code was not spent by the refused attempts')
  })

  await t.test('through an HTTP proxy (CONNECT), with the pin; a proxy that refuses the tunnel is named', async (t) => {
    const { createServer } = await import('node:http')
    const { connect } = await import('node:net')
    const tunnels: string[] = []
    const proxy = createServer((_req, res) => res.writeHead(405).end())
    proxy.on('connect', (req, client, head) => {
      tunnels.push(req.url ?? '')
      if (req.url?.startsWith('127.0.0.1:') !== true) return client.end('HTTP/1.1 403 Forbidden\r\n\r\n')
      const [host, port] = (req.url ?? '').split(':')
      const upstream = connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        upstream.write(head)
        upstream.pipe(client)
        client.pipe(upstream)
      })
      upstream.on('error', () => client.destroy())
      client.on('error', () => upstream.destroy())
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise<void>((resolve) => proxy.close(() => resolve())))
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as import('node:net').AddressInfo).port}`
    const code = await adminCreate('gw-proxy')
    const box = await newBox({ proxyUrl })
    const identity = await box.client.enroll({ code })
    t.equal(identity.gatewayId, 'gw-proxy')
    t.ok(tunnels.length >= 2 && tunnels.every((u) => u === new URL(relay.url).host), 'pin discovery and requests went through the proxy')
    const refusing = await newBox({ proxyUrl, relayUrl: relay.url.replace('127.0.0.1', 'localhost') })
    const refused = await boxFailure(refusing.client.enroll({ code }))
    t.equal(refused.code, 'BOX_PROXY')
    t.match(refused.message, /refused the tunnel/)
  })

  await t.test('clock: a box a day behind is told so before the code is spent, and enrolls once corrected', async (t) => {
    const code = await adminCreate('gw-box5')
    const boxClock = new ShiftedClock(-DAY_MS)
    const box = await newBox({}, boxClock)
    const skew = await boxFailure(box.client.enroll({ code }))
    t.equal(skew.code, 'BOX_CLOCK_SKEW')
    t.match(skew.message, /the box clock is 24 h behind the relay; TLS certificates will fail: enable NTP \(timedatectl set-ntp true\) or set the time/)
    boxClock.offsetMs = 2 * 3600_000
    t.match((await boxFailure(box.client.enroll({ code }))).message, /2 h ahead of the relay/)
    boxClock.offsetMs = 0
    const identity = await box.client.enroll({ code })
    t.equal(identity.gatewayId, 'gw-box5')
  })

  await t.test('renewal with the same key through the client; revoked → needs enrollment', async (t) => {
    const code = await adminCreate('gw-box6')
    const box = await newBox()
    const first = await box.client.enroll({ code })
    const firstSerial = side.pki.verifyClientCertificate(first.certPem).serial
    const renewed = await box.client.renew()
    const newSerial = side.pki.verifyClientCertificate(renewed.certPem).serial
    t.not(newSerial, firstSerial)
    t.equal(renewed.keyPem, first.keyPem, 'same key')
    t.equal(renewed.enrolledAt, first.enrolledAt)
    t.ok(side.service.isCertificateAllowed('gw-box6', newSerial))
    const reloaded = await new IdentityStore(box.dir).load()
    t.equal(reloaded?.certPem, renewed.certPem, 'the renewed certificate is on disk')
    await side.service.revoke('gw-box6', 'test', 'test')
    const refused = await boxFailure(box.client.renew())
    t.equal(refused.code, 'RENEW_REVOKED')
    t.match(refused.message, /needs enrollment: get a new code from the console/)
    t.notOk(refused.retryable)
  })

  await t.test('CertificateRenewal: renews at 2/3 of the lifetime on the clock, retries with backoff, emits onRenewed', async (t) => {
    const code = await adminCreate('gw-box7')
    const box = await newBox()
    const enrolled = await box.client.enroll({ code })
    const clock = new ManualClock(Date.now())
    let calls = 0
    let failNext = 2
    const flaky = {
      renew: async () => {
        calls++
        if (failNext-- > 0) throw new BoxEnrollmentError('BOX_REFUSED', 'relay down', true)
        return box.client.renew()
      },
    }
    const renewal = new CertificateRenewal({ store: box.store, client: flaky, clock, logger: silent, retry: { baseMs: 1000, maxMs: 10_000, random: () => 1 } })
    const renewedIds: string[] = []
    renewal.onRenewed((identity) => renewedIds.push(identity.certPem))
    await renewal.start()
    t.equal(renewal.status.state, 'scheduled')
    const renewAt = Date.parse(enrolled.renewAfter)
    clock.advance(renewAt - clock.now() - 60_000)
    t.equal(calls, 0, 'nothing before renewAfter')
    clock.advance(60_000)
    t.equal(calls, 1)
    await waitFor(() => renewal.status.state === 'retrying')
    clock.advance(1000)
    await waitFor(() => calls === 2 && renewal.status.state === 'retrying')
    clock.advance(2000)
    await waitFor(() => renewedIds.length === 1)
    t.equal(calls, 3)
    t.equal(renewal.status.state, 'scheduled')
    const loaded = await box.store.load()
    t.equal(loaded?.certPem, renewedIds[0])
    renewal.stop()
    t.equal(clock.pending, 0, 'stop() leaves no timer')
  })

  await t.test('CertificateRenewal: a revoked box ends in "needs enrollment"', async (t) => {
    const code = await adminCreate('gw-box8')
    const box = await newBox()
    await box.client.enroll({ code })
    await side.service.revoke('gw-box8', 'decommissioned', 'test')
    const clock = new ManualClock(Date.now())
    const renewal = new CertificateRenewal({ store: box.store, client: box.client, clock, logger: silent })
    const reasons: string[] = []
    renewal.onNeedsEnrollment((reason) => reasons.push(reason))
    await renewal.start()
    await renewal.renewNow()
    t.equal(renewal.status.state, 'needs-enrollment')
    t.match(reasons[0], /needs enrollment: get a new code from the console/)
    t.equal(clock.pending, 0, 'no retry is scheduled')
    renewal.stop()
  })
})

t.test('brute force: 429 with Retry-After; bad CSR 400; oversized body 413 (own relay: the limiter counts per address)', async (t) => {
  const side = await relaySide('pglite')
  const relay = await httpsRelay(side)
  const { Agent } = await import('undici')
  const insecure = new Agent({ connect: { ca: side.pki.caCertPem } })
  const dir = await mkdtemp(join(tmpdir(), 'box-'))
  t.teardown(async () => {
    await insecure.close()
    await relay.close()
    await side.close()
    await rm(dir, { recursive: true, force: true })
  })
  let last = 0
  let retryAfter: string | undefined
  for (let i = 0; i < 12; i++) {
    const res = await request(`${relay.url}/enroll/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: `XXXX-XXXX-XXXX-XX${String(i).padStart(2, '0')}`, csrPem: 'x' }), dispatcher: insecure })
    last = res.statusCode
    retryAfter = res.headers['retry-after'] as string | undefined
    const body = (await res.body.json()) as { error: { code: string } }
    if (i < 10) t.equal(body.error.code, 'ENROLL_CODE_UNKNOWN', `attempt ${i + 1} refused as unknown`)
    else t.equal(body.error.code, 'ENROLL_RATE_LIMITED', `attempt ${i + 1} rate limited`)
  }
  t.equal(last, 429)
  t.ok(Number(retryAfter) > 0 && Number(retryAfter) <= 600, 'Retry-After says when to try again')
  const box = new EnrollmentClient({ store: new IdentityStore(dir), clock: side.clock, logger: silent }, { relayUrl: relay.url, caFingerprint: side.pki.caFingerprint256 })
  // The test's own requests came from 127.0.0.1 too: the box is limited as well, and says so in words.
  const limited = await boxFailure(box.enroll({ code: '7777-7777-7777-7777' }))
  t.equal(limited.code, 'ENROLL_RATE_LIMITED')
  t.match(limited.message, /too many failed attempts/)
  t.ok(limited.retryable)
  side.clock.offsetMs = 11 * 60_000
  const { code } = await side.service.createGateway('contoso', { id: 'gw-brute' })
  const bad = await request(`${relay.url}/enroll/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code, csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n' }), dispatcher: insecure })
  t.equal(bad.statusCode, 400)
  t.equal(((await bad.body.json()) as { error: { code: string } }).error.code, 'ENROLL_BAD_CSR')
  const huge = await request(`${relay.url}/enroll/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code, csrPem: 'A'.repeat(70_000) }), dispatcher: insecure })
  t.equal(huge.statusCode, 413)
  await huge.body.dump()
  const missing = await request(`${relay.url}/enroll/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }), dispatcher: insecure })
  t.equal(missing.statusCode, 400)
  t.match(((await missing.body.json()) as { error: { message: string } }).error.message, /csrPem/)
  t.ok(side.counters.get('enrollment.rejected') >= 13, 'every rejection counted')
  t.ok(side.logs().filter((l) => l.msg === 'enrollment request rejected').length >= 13, 'and logged')
})

t.test('a relay whose clock is a day ahead: TLS date error explained as box clock skew', async (t) => {
  const relayClock = new ShiftedClock(DAY_MS)
  const side = await relaySide('pglite', { clock: relayClock })
  const relay = await httpsRelay(side)
  const dir = await mkdtemp(join(tmpdir(), 'box-'))
  t.teardown(async () => {
    await relay.close()
    await side.close()
    await rm(dir, { recursive: true, force: true })
  })
  const { code } = await side.service.createGateway('contoso', { id: 'gw-skew' })
  const client = new EnrollmentClient({ store: new IdentityStore(dir), clock: new ShiftedClock(), logger: silent }, { relayUrl: relay.url, caFingerprint: side.pki.caFingerprint256 })
  const failure = await boxFailure(client.enroll({ code }))
  t.equal(failure.code, 'BOX_CLOCK_SKEW')
  t.match(failure.message, /the box clock is 24 h behind the relay/)
  const fixedBox = new EnrollmentClient({ store: new IdentityStore(dir), clock: new ShiftedClock(DAY_MS), logger: silent }, { relayUrl: relay.url, caFingerprint: side.pki.caFingerprint256 })
  // The box's own clock is now right, but TLS uses the operating system's: the real fix is NTP. The message stays clear.
  const still = await boxFailure(fixedBox.enroll({ code }))
  t.equal(still.code, 'BOX_TLS_DATES')
  t.match(still.message, /not yet valid by the box clock/)
})

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
