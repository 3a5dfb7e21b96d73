/**
 * Enrollment and renewal have separate limiters: failed enrollments count per address, renewals per gateway
 * (once the request proves it holds the key of a certificate the relay issued). An attacker hammering
 * enrollment, or sending junk renewals, from the address a fleet shares (NAT, proxy) cannot stop that fleet
 * from renewing; one box flooding renewals is limited for itself only. Real HTTPS relay, real box client.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { Agent, request } from 'undici'
import { createCsr, generateKeyPem } from '../../cloud-relay/src/pki/relay-pki.js'
import { BoxEnrollmentError, EnrollmentClient } from '../../gateway/src/identity/enrollment-client.js'
import { IdentityStore } from '../../gateway/src/identity/identity-store.js'
import { httpsRelay, relaySide, ShiftedClock } from '../enrollment/fixtures/enrollment-world.js'

const silent = pino({ level: 'silent' })

const side = await relaySide('pglite')
const relay = await httpsRelay(side)
const tls = new Agent({ connect: { ca: side.pki.caCertPem } })
const dirs: string[] = []
t.teardown(async () => {
  await tls.close()
  await relay.close()
  await side.close()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

/** A box enrolled through the real client, ready to renew. */
async function enrolledBox(id: string) {
  const dir = await mkdtemp(join(tmpdir(), 'box-limits-'))
  dirs.push(dir)
  const store = new IdentityStore(dir)
  const clock = new ShiftedClock()
  const client = new EnrollmentClient({ store, clock, logger: silent }, { relayUrl: relay.url, caFingerprint: side.pki.caFingerprint256 })
  const { code } = await side.service.createGateway('contoso', { id })
  const identity = await client.enroll({ code })
  return { client, store, identity, clock }
}

async function post(path: string, body: unknown): Promise<{ status: number; code: string; message: string; retryAfter: string | undefined }> {
  const res = await request(`${relay.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), dispatcher: tls })
  const json = (await res.body.json()) as { error?: { code: string; message: string } }
  return { status: res.statusCode, code: json.error?.code ?? 'OK', message: json.error?.message ?? '', retryAfter: res.headers['retry-after'] as string | undefined }
}

// Every box of the fleet enrolls first (successes never count against an address).
const boxes = new Map<string, Awaited<ReturnType<typeof enrolledBox>>>()
for (const id of ['gw-nat-1', 'gw-nat-2', 'gw-victim', 'gw-flood', 'gw-quiet']) boxes.set(id, await enrolledBox(id))
const fleetBox = (id: string) => {
  const found = boxes.get(id)
  if (found === undefined) throw new Error(`no box ${id}`)
  return found
}

const badEnroll = (i: number) => post('/enroll/v1/enroll', { code: `ZZZZ-ZZZZ-ZZZZ-Z${String(i).padStart(3, '0')}`, csrPem: 'x' })

t.test('parallel wrong codes from one address: at most the limit is evaluated, the rest is refused before any check', async (t) => {
  // Straight into the service, all in the same tick: the check must count an attempt before it awaits anything.
  const key = await generateKeyPem()
  const csrPem = await createCsr('box', key.keyPem)
  const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => side.service.enroll({ code: `YYYY-YYYY-YYYY-Y${String(i).padStart(3, '0')}`, csrPem, remoteAddress: '192.0.2.77' })))
  const codes = results.map((r) => (r.status === 'rejected' ? (r.reason as { code?: string }).code : 'issued'))
  t.equal(codes.filter((c) => c === 'ENROLL_CODE_UNKNOWN').length, 10, 'ten attempts (failedAttemptsPerWindow) were checked')
  t.equal(codes.filter((c) => c === 'ENROLL_RATE_LIMITED').length, 20, 'the other twenty were refused before any check')
  // Over HTTP from 127.0.0.1: the limit holds there too, with 429 and Retry-After.
  const answers = []
  for (let i = 0; i < 11; i++) answers.push(await badEnroll(i))
  t.same(answers.slice(0, 10).map((a) => a.code), Array(10).fill('ENROLL_CODE_UNKNOWN'))
  t.equal(answers[10]?.status, 429)
  t.ok(Number(answers[10]?.retryAfter) > 0, '429 with Retry-After')
})

t.test('enrollment exhausted from one address: a box behind the same address still renews', async (t) => {
  // The limiter above is full for 127.0.0.1: enrollment from here is refused...
  const refused = await badEnroll(99)
  t.equal(refused.status, 429)
  t.match(refused.message, /failed attempts/)
  // ...and a real box renewing from the same address is not.
  const box = fleetBox('gw-nat-1')
  const renewed = await box.client.renew()
  t.not(renewed.certPem, box.identity.certPem, 'renewed over HTTPS from the limited address')
  t.ok(side.service.isCertificateAllowed('gw-nat-1', side.pki.verifyClientCertificate(renewed.certPem).serial))
})

t.test('junk renewals from the shared address are limited there; a genuine box behind it still renews', async (t) => {
  const { createRelayCa, RelayPki } = await import('../../cloud-relay/src/pki/relay-pki.js')
  const otherCa = await RelayPki.load(await createRelayCa('someone else'))
  const stranger = await otherCa.issueClientCertificate('gw-nat-2')
  const junk = { certificatePem: stranger.certPem, csrPem: await createCsr('gw-nat-2', stranger.keyPem) }
  const answers = []
  for (let i = 0; i < 12; i++) answers.push(await post('/enroll/v1/renew', junk))
  t.same(answers.slice(0, 10).map((a) => a.code), Array(10).fill('RENEW_NOT_OURS'), 'refused as not ours')
  t.same(answers.slice(10).map((a) => `${a.status} ${a.code}`), ['429 RENEW_RATE_LIMITED', '429 RENEW_RATE_LIMITED'], 'then limited for this address')
  t.match(answers[10]?.message, /from 127\.0\.0\.1/)
  const box = fleetBox('gw-nat-2')
  const renewed = await box.client.renew()
  t.not(renewed.certPem, box.identity.certPem, 'the box with its own certificate and key is not limited by the junk')
})

t.test('a stolen certificate without its key cannot use up the gateway\'s renewals', async (t) => {
  const box = fleetBox('gw-victim')
  const other = await generateKeyPem()
  const forged = { certificatePem: box.identity.certPem, csrPem: await createCsr('gw-victim', other.keyPem), remoteAddress: '192.0.2.88' }
  const codes = []
  for (let i = 0; i < 15; i++) codes.push(await side.service.renew(forged).then(() => 'issued', (err: { code?: string }) => err.code))
  t.same(codes, [...Array(10).fill('RENEW_KEY_MISMATCH'), ...Array(5).fill('RENEW_RATE_LIMITED')], 'limited for the sending address')
  const renewed = await box.client.renew()
  t.not(renewed.certPem, box.identity.certPem, 'the real box renews')
})

t.test('a renewal flood from one certificate is limited for that gateway only', async (t) => {
  const flooding = fleetBox('gw-flood')
  const quiet = fleetBox('gw-quiet')
  let renewals = 0
  let refusal: BoxEnrollmentError | undefined
  for (let i = 0; i < 30 && refusal === undefined; i++) {
    try {
      await flooding.client.renew()
      renewals++
    } catch (err) {
      if (!(err instanceof BoxEnrollmentError)) throw err
      refusal = err
    }
  }
  t.equal(renewals, 10, 'ten renewals per window for one gateway')
  t.equal(refusal?.code, 'RENEW_RATE_LIMITED')
  t.equal(refusal?.status, 429)
  t.ok(refusal?.retryable, 'the box retries later instead of giving up')
  t.match(refusal?.message, /gw-flood/)
  const limitLog = side.logs().find((l) => l.msg === 'enrollment request rejected' && l.reason === 'RENEW_RATE_LIMITED' && l['gatewayId'] !== undefined)
  t.equal(limitLog?.['gatewayId'], 'gw-flood', 'the log names the gateway')
  const renewed = await quiet.client.renew()
  t.not(renewed.certPem, quiet.identity.certPem, 'another gateway from the same address renews')
  await t.rejects(flooding.client.renew(), { code: 'RENEW_RATE_LIMITED' }, 'the flooding gateway stays limited for the window')
  // Relay and box both 11 minutes on: the window has passed.
  side.clock.offsetMs = 11 * 60_000
  flooding.clock.offsetMs = 11 * 60_000
  t.teardown(() => { side.clock.offsetMs = 0 })
  const later = await flooding.client.renew()
  t.ok(later.certPem.length > 0, 'after the window it renews again')
})

