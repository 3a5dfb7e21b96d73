import t from 'tap'
import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { certificationRequest, ipBytes, selfSignedServerCertificate } from '../../gateway/src/identity/x509-writer.js'

// The box writes its setup page's certificate and its enrollment request by hand in DER; node:crypto (OpenSSL)
// must read them as written. The relay's side of the request is tested in test/enrollment/box-identity.test.ts.

t.test('the self-signed certificate reads back with its names, dates, usages and a valid signature', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const serial = Buffer.from('7f0102030405060708090a0b0c0d0e0f', 'hex')
  const pem = selfSignedServerCertificate({
    privateKey, serial, commonName: 'pbxgw-1a2b', organization: 'PBX presence gateway (setup page)',
    notBefore: new Date('2026-12-01T10:00:00Z'), notAfter: new Date('2056-12-01T10:00:00Z'),
    dns: ['pbxgw-1a2b', 'localhost'], ips: ['127.0.0.1', '::1', '192.0.2.7', '2001:db8::7'],
  })
  const cert = new X509Certificate(pem)
  t.equal(cert.subject, 'CN=pbxgw-1a2b\nO=PBX presence gateway (setup page)')
  t.equal(cert.issuer, cert.subject, 'self-signed')
  t.ok(cert.verify(publicKey), 'signed with the key')
  t.ok(cert.publicKey.equals(publicKey), 'carries the key')
  t.equal(cert.serialNumber, '7F0102030405060708090A0B0C0D0E0F')
  t.equal(new Date(cert.validFrom).toISOString(), '2026-12-01T10:00:00.000Z', 'UTCTime before 2050')
  t.equal(new Date(cert.validTo).toISOString(), '2056-12-01T10:00:00.000Z', 'GeneralizedTime from 2050')
  t.equal(cert.ca, false, 'not a CA')
  t.same(cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth')
  t.equal(cert.subjectAltName, 'DNS:pbxgw-1a2b, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:7')
  t.equal(cert.checkHost('pbxgw-1a2b'), 'pbxgw-1a2b')
  t.equal(cert.checkIP('2001:db8::7'), '2001:db8::7')
})

t.test('a serial with its top bit set stays positive', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const pem = selfSignedServerCertificate({ privateKey, serial: Buffer.from('ff01', 'hex'), commonName: 'x', organization: 'y', notBefore: new Date(), notAfter: new Date(Date.now() + 1000), dns: ['x'], ips: [] })
  t.equal(new X509Certificate(pem).serialNumber, 'FF01')
})

t.test('a certification request is PEM with the key and subject', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const pem = certificationRequest(privateKey, 'gw-1, "quoted"')
  t.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE REQUEST-----\n$/)
})

t.test('IP addresses in subjectAltName form', async (t) => {
  t.equal(ipBytes('10.0.0.1').toString('hex'), '0a000001')
  t.equal(ipBytes('::1').toString('hex'), '00000000000000000000000000000001')
  t.equal(ipBytes('2001:db8::1').toString('hex'), '20010db8000000000000000000000001')
  t.equal(ipBytes('::ffff:192.0.2.1').toString('hex'), '00000000000000000000ffffc0000201')
  t.equal(ipBytes('fe80::1%eth0').toString('hex'), 'fe800000000000000000000000000001', 'the zone is dropped')
  t.throws(() => ipBytes('pbxgw.local'), /not an IP address/)
})
