import { X509Certificate } from 'node:crypto'
import t from 'tap'
import { createCsr, generateKeyPem } from '../../cloud-relay/src/pki/relay-pki.js'
import { EnrollmentError } from '../../cloud-relay/src/enrollment/enrollment-service.js'
import { formatCode, normaliseCode } from '../../cloud-relay/src/enrollment/enrollment-codes.js'
import { DAY_MS, relaySide, type Backend } from './fixtures/enrollment-world.js'

async function rejects(promise: Promise<unknown>, code: string): Promise<EnrollmentError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof EnrollmentError && err.code === code) return err
    throw new Error(`expected ${code}, got ${err instanceof EnrollmentError ? err.code : String(err)}`)
  }
  throw new Error(`expected ${code}, but it succeeded`)
}

t.test('codes: Crockford base32, XXXX-XXXX-XXXX-XXXX, forgiving input', async (t) => {
  t.equal(normaliseCode('abcd-efgh-jkmn-pqrs'), 'ABCDEFGHJKMNPQRS')
  t.equal(normaliseCode('ABCDEFGHJKMNPQRS'), 'ABCDEFGHJKMNPQRS')
  t.equal(normaliseCode('oiL0 0000 0000 0000'), '0110000000000000', 'O reads as 0, I and L as 1')
  t.equal(normaliseCode('UUUU-0000-0000-0000'), undefined, 'U is not in the alphabet')
  t.equal(normaliseCode('ABCD-EFGH'), undefined, 'too short')
  t.equal(formatCode('ABCDEFGHJKMNPQRS'), 'ABCD-EFGH-JKMN-PQRS')
})

for (const backend of ['pglite', 'postgres'] as Backend[]) {
  t.test(`enrollment service on ${backend}`, async (t) => {
    const side = await relaySide(backend)
    t.teardown(() => side.close())
    const { service, pki, clock, counters } = side

    t.test('happy path: code → certificate for the gateway id, tenant recorded, code shown once and stored hashed', async (t) => {
      const created = await service.createGateway('contoso', { id: 'gw-hq', name: 'HQ' })
      t.match(created.code, /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/)
      t.equal(created.gateway.state, 'created')
      const stored = await side.db.query<{ hash: string }>('SELECT hash FROM enrollment_codes WHERE gateway_id = $1', ['gw-hq'])
      t.equal(stored.length, 1)
      t.not(stored[0]?.hash, created.code.replaceAll('-', ''), 'only the hash is stored')
      const key = await generateKeyPem()
      const issued = await service.enroll({ code: created.code.toLowerCase().replaceAll('-', ''), csrPem: await createCsr('whatever-the-box-asks', key.keyPem), remoteAddress: '127.0.0.1' })
      t.equal(issued.gatewayId, 'gw-hq')
      t.equal(issued.tenantId, 'contoso')
      t.same(issued.brokerUrls, ['mqtts://relay.test:8883', 'wss://relay.test:443/mqtt'])
      const verified = pki.verifyClientCertificate(issued.certificatePem)
      t.equal(verified.commonName, 'gw-hq', 'CN is the gateway id the relay decided, not the CSR subject')
      t.ok(new X509Certificate(issued.certificatePem).checkIssued(new X509Certificate(issued.caChainPem)))
      const lifetime = Date.parse(issued.notAfter) - verified.notBefore.getTime()
      t.ok(Math.abs(Date.parse(issued.renewAfter) - (verified.notBefore.getTime() + (lifetime * 2) / 3)) < 1000, 'renewAfter at 2/3 of the lifetime')
      const identity = await service.getGateway('gw-hq')
      t.equal(identity?.state, 'enrolled')
      t.equal(identity?.certificateSerial, verified.serial)
      t.equal(identity?.tenantId, 'contoso')
      t.ok(service.isCertificateAllowed('gw-hq', verified.serial.toUpperCase()), 'the broker check accepts the serial in any case')
      t.notOk(service.isCertificateAllowed('gw-other', verified.serial))
      await rejects(service.enroll({ code: created.code, csrPem: await createCsr('x', key.keyPem), remoteAddress: '127.0.0.1' }), 'ENROLL_CODE_USED')
      t.ok(counters.get('enrollment.rejected') >= 1)
      const warn = side.logs().find((l) => l.msg === 'enrollment request rejected' && l.reason === 'ENROLL_CODE_USED')
      t.ok(warn, 'rejection logged with its reason code')
      t.notOk(JSON.stringify(side.logs()).includes(created.code.replaceAll('-', '').slice(0, 8)), 'the code itself is never logged')
    })

    t.test('unknown, expired and replaced codes; unknown tenant; duplicate id', async (t) => {
      const key = await generateKeyPem()
      const csrPem = await createCsr('box', key.keyPem)
      await rejects(service.enroll({ code: '0000-0000-0000-0000', csrPem, remoteAddress: '10.0.0.1' }), 'ENROLL_CODE_UNKNOWN')
      await rejects(service.enroll({ code: 'not a code', csrPem, remoteAddress: '10.0.0.1' }), 'ENROLL_CODE_UNKNOWN')
      const created = await service.createGateway('contoso', { id: 'gw-late' })
      clock.offsetMs = 25 * 3600_000
      const expired = await rejects(service.enroll({ code: created.code, csrPem, remoteAddress: '10.0.0.1' }), 'ENROLL_CODE_EXPIRED')
      t.match(expired.message, /create a new code in the console/)
      t.equal(expired.statusCode, 410)
      clock.offsetMs = 0
      const first = await service.newCode('gw-late')
      const second = await service.newCode('gw-late')
      await rejects(service.enroll({ code: first.code, csrPem, remoteAddress: '10.0.0.1' }), 'ENROLL_CODE_EXPIRED')
      const issued = await service.enroll({ code: second.code, csrPem, remoteAddress: '10.0.0.1' })
      t.equal(issued.gatewayId, 'gw-late')
      await rejects(service.createGateway('nobody', {}), 'ENROLL_UNKNOWN_TENANT')
      await rejects(service.createGateway('contoso', { id: 'gw-late' }), 'ENROLL_GATEWAY_EXISTS')
      await rejects(service.createGateway('contoso', { id: '-bad id' }), 'ENROLL_BAD_GATEWAY_ID')
      const generated = await service.createGateway('fabrikam', { name: 'no id given' })
      t.match(generated.gateway.id, /^gw-[0-9a-f]{10}$/)
    })

    t.test('bad CSR is refused and does not spend the code', async (t) => {
      const created = await service.createGateway('contoso', { id: 'gw-csr' })
      const bad = await rejects(service.enroll({ code: created.code, csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----', remoteAddress: '10.0.0.2' }), 'ENROLL_BAD_CSR')
      t.equal(bad.statusCode, 400)
      const key = await generateKeyPem()
      const issued = await service.enroll({ code: created.code, csrPem: await createCsr('box', key.keyPem), remoteAddress: '10.0.0.2' })
      t.equal(issued.gatewayId, 'gw-csr')
    })

    t.test('a code is spent exactly once under concurrent use', async (t) => {
      const created = await service.createGateway('contoso', { id: 'gw-race' })
      const keys = await Promise.all([generateKeyPem(), generateKeyPem(), generateKeyPem(), generateKeyPem()])
      const csrs = await Promise.all(keys.map((k) => createCsr('box', k.keyPem)))
      const results = await Promise.allSettled(csrs.map((csrPem, i) => service.enroll({ code: created.code, csrPem, remoteAddress: `10.1.0.${i}` })))
      t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one winner')
      for (const r of results) if (r.status === 'rejected') t.equal((r.reason as EnrollmentError).code, 'ENROLL_CODE_USED')
      const certs = await side.db.query('SELECT serial FROM gateway_certificates WHERE gateway_id = $1', ['gw-race'])
      t.equal(certs.length, 1, 'one certificate recorded')
    })

    t.test('failed attempts are rate limited per remote address', async (t) => {
      const key = await generateKeyPem()
      const csrPem = await createCsr('box', key.keyPem)
      for (let i = 0; i < 10; i++) await rejects(service.enroll({ code: `ZZZZ-ZZZZ-ZZZZ-ZZ${String(i).padStart(2, '0')}`, csrPem, remoteAddress: '192.0.2.9' }), 'ENROLL_CODE_UNKNOWN')
      const created = await service.createGateway('contoso', { id: 'gw-brute' })
      const limited = await rejects(service.enroll({ code: created.code, csrPem, remoteAddress: '192.0.2.9' }), 'ENROLL_RATE_LIMITED')
      t.equal(limited.statusCode, 429)
      t.ok(limited.retryAfterS !== undefined && limited.retryAfterS > 0 && limited.retryAfterS <= 600)
      const other = await service.enroll({ code: created.code, csrPem, remoteAddress: '192.0.2.10' })
      t.equal(other.gatewayId, 'gw-brute', 'another address is not affected, and the limited attempt did not spend the code')
      clock.offsetMs = 11 * 60_000
      await rejects(service.enroll({ code: created.code, csrPem, remoteAddress: '192.0.2.9' }), 'ENROLL_CODE_USED')
      clock.offsetMs = 0
    })

    t.test('renewal: same key works, a different key or a foreign certificate is refused, grace and expiry', async (t) => {
      const created = await service.createGateway('contoso', { id: 'gw-renew' })
      const key = await generateKeyPem()
      const first = await service.enroll({ code: created.code, csrPem: await createCsr('box', key.keyPem), remoteAddress: '10.0.0.3' })
      const renewed = await service.renew({ certificatePem: first.certificatePem, csrPem: await createCsr('gw-renew', key.keyPem) })
      const firstSerial = pki.verifyClientCertificate(first.certificatePem).serial
      const newSerial = pki.verifyClientCertificate(renewed.certificatePem).serial
      t.not(newSerial, firstSerial)
      t.ok(service.isCertificateAllowed('gw-renew', newSerial))
      t.ok(service.isCertificateAllowed('gw-renew', firstSerial), 'the previous certificate still works (the box may have lost the answer)')
      // The box lost the answer and retries with the previous certificate: allowed, and the unreceived one is revoked.
      const retried = await service.renew({ certificatePem: first.certificatePem, csrPem: await createCsr('gw-renew', key.keyPem) })
      const retriedSerial = pki.verifyClientCertificate(retried.certificatePem).serial
      t.notOk(service.isCertificateAllowed('gw-renew', newSerial), 'the certificate the box never received is revoked')
      t.ok(service.revokedCertificates().some((r) => r.serial === newSerial))
      const third = await service.renew({ certificatePem: retried.certificatePem, csrPem: await createCsr('gw-renew', key.keyPem) })
      await rejects(service.renew({ certificatePem: first.certificatePem, csrPem: await createCsr('gw-renew', key.keyPem) }), 'RENEW_REVOKED')
      t.ok(service.isCertificateAllowed('gw-renew', retriedSerial))

      const otherKey = await generateKeyPem()
      const mismatch = await rejects(service.renew({ certificatePem: third.certificatePem, csrPem: await createCsr('gw-renew', otherKey.keyPem) }), 'RENEW_KEY_MISMATCH')
      t.match(mismatch.message, /keeps the key/)
      const foreign = await side.pki.issueClientCertificate('gw-renew')
      const { createRelayCa, RelayPki } = await import('../../cloud-relay/src/pki/relay-pki.js')
      const otherCa = await RelayPki.load(await createRelayCa('someone else'))
      const stranger = await otherCa.issueClientCertificate('gw-renew')
      await rejects(service.renew({ certificatePem: stranger.certPem, csrPem: await createCsr('gw-renew', stranger.keyPem) }), 'RENEW_NOT_OURS')
      await rejects(service.renew({ certificatePem: foreign.certPem, csrPem: await createCsr('gw-renew', foreign.keyPem) }), 'RENEW_REVOKED')

      clock.offsetMs = 33 * DAY_MS
      const graced = await service.renew({ certificatePem: third.certificatePem, csrPem: await createCsr('gw-renew', key.keyPem) })
      t.ok(Date.parse(graced.notAfter) > clock.now(), 'an expired certificate renews within the grace')
      clock.offsetMs = 33 * DAY_MS + 38 * DAY_MS
      const expired = await rejects(service.renew({ certificatePem: graced.certificatePem, csrPem: await createCsr('gw-renew', key.keyPem) }), 'RENEW_EXPIRED')
      t.match(expired.message, /new code/)
      clock.offsetMs = 0
    })

    t.test('revocation: cut off at once, old codes refused (403), no new codes, no renewal, CRL lists the serials', async (t) => {
      const created = await service.createGateway('contoso', { id: 'gw-stolen' })
      const key = await generateKeyPem()
      const issued = await service.enroll({ code: created.code, csrPem: await createCsr('box', key.keyPem), remoteAddress: '10.0.0.4' })
      const serial = pki.verifyClientCertificate(issued.certificatePem).serial
      const pending = await service.newCode('gw-stolen')
      const heard: string[] = []
      const off = service.onRevoked((r) => heard.push(`${r.gatewayId}:${r.tenantId}:${r.serials.join(',')}:${r.reason}`))
      const revoked = await service.revoke('gw-stolen', 'box stolen', 'test admin')
      off()
      t.equal(revoked.state, 'revoked')
      t.equal(revoked.revokedReason, 'box stolen')
      t.same(heard, [`gw-stolen:contoso:${serial}:box stolen`])
      t.notOk(service.isCertificateAllowed('gw-stolen', serial))
      const old = await rejects(service.enroll({ code: pending.code, csrPem: await createCsr('box', key.keyPem), remoteAddress: '10.0.0.4' }), 'ENROLL_GATEWAY_REVOKED')
      t.equal(old.statusCode, 403)
      await rejects(service.newCode('gw-stolen'), 'ENROLL_GATEWAY_REVOKED')
      await rejects(service.renew({ certificatePem: issued.certificatePem, csrPem: await createCsr('gw-stolen', key.keyPem) }), 'RENEW_REVOKED')
      t.ok(service.revokedCertificates().some((r) => r.serial === serial))
      const crl = await pki.createCrl(service.revokedCertificates())
      t.match(crl, /BEGIN X509 CRL/)
      await rejects(service.revoke('gw-nobody', 'x', 'test admin'), 'ENROLL_UNKNOWN_GATEWAY')
      const events = await side.relayStore.listEvents({})
      t.ok(events.some((e) => e.kind === 'gateway.revoked' && e.message.includes('box stolen')), 'revocation in the event log')

      // A fresh service (relay restart) rebuilds the broker check and the CRL from the store.
      const { EnrollmentService } = await import('../../cloud-relay/src/enrollment/enrollment-service.js')
      const again = new EnrollmentService({ store: side.store, pki, clock, logger: side.logger, counters, settings: (await import('./fixtures/enrollment-world.js')).SETTINGS })
      await again.load()
      t.notOk(again.isCertificateAllowed('gw-stolen', serial))
      t.ok(again.revokedCertificates().some((r) => r.serial === serial))
      const hq = await service.getGateway('gw-hq')
      t.ok(hq?.certificateSerial && again.isCertificateAllowed('gw-hq', hq.certificateSerial))
    })

    t.test('re-enrollment with a new code replaces (and revokes) the old certificate', async (t) => {
      const created = await service.createGateway('contoso', { id: 'gw-reset' })
      const key1 = await generateKeyPem()
      const first = await service.enroll({ code: created.code, csrPem: await createCsr('box', key1.keyPem), remoteAddress: '10.0.0.5' })
      const code2 = await service.newCode('gw-reset')
      const key2 = await generateKeyPem()
      const second = await service.enroll({ code: code2.code, csrPem: await createCsr('box', key2.keyPem), remoteAddress: '10.0.0.5' })
      const s1 = pki.verifyClientCertificate(first.certificatePem).serial
      const s2 = pki.verifyClientCertificate(second.certificatePem).serial
      t.notOk(service.isCertificateAllowed('gw-reset', s1))
      t.ok(service.isCertificateAllowed('gw-reset', s2))
      t.ok(service.revokedCertificates().some((r) => r.serial === s1))
      await rejects(service.renew({ certificatePem: first.certificatePem, csrPem: await createCsr('gw-reset', key1.keyPem) }), 'RENEW_REVOKED')
    })
  })
}
