import t from 'tap'
import { appLoginDigest } from '../../gateway/src/adapters/innovaphone/login.js'

// The documented test vectors (AppWebsocket.htm, research B.2): app "pbxadminapi", challenge
// "0123456789abcdef", password "pwd", domain/sip/guid/dn empty.
const base = { app: 'pbxadminapi', domain: '', sip: '', guid: '', dn: '' }
const challenge = '0123456789abcdef'

t.test('without info the info segment is left out', async (t) => {
  t.equal(appLoginDigest(base, challenge, 'pwd'), 'a205299ed2ef2786c311e0be1b14db343f2cadd906a6ae7b564eee34bda5e9a1')
})

t.test('an empty info object is part of the digest as {}', async (t) => {
  t.equal(appLoginDigest({ ...base, info: {} }, challenge, 'pwd'), '57b23fe824b9222a7ac879597cb509bcdc865a1bfeb057d9d12118cef0c3ba34')
})

t.test('info is compact JSON', async (t) => {
  t.equal(appLoginDigest({ ...base, info: { cn: 'Test User' } }, challenge, 'pwd'), '96db3c3f657230c2b68194becc6d2a77f05de9f79f01fc81e9ca0fb196b10d9d')
})

t.test('every covered field changes the digest', async (t) => {
  const reference = appLoginDigest(base, challenge, 'pwd')
  for (const field of ['app', 'domain', 'sip', 'guid', 'dn'] as const) {
    t.not(appLoginDigest({ ...base, [field]: 'x' }, challenge, 'pwd'), reference, field)
  }
  t.not(appLoginDigest(base, '0123456789abcdee', 'pwd'), reference, 'challenge')
  t.not(appLoginDigest(base, challenge, 'pwe'), reference, 'password')
})
