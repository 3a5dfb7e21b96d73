import { constants, createCipheriv, createHmac, publicEncrypt, randomBytes, X509Certificate, createPrivateKey } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import { pino } from 'pino'
import { Counters } from '#kernel/counters.js'
import { createNotificationCertificate, decryptResourceData, DecryptError } from '../../cloud-relay/src/notifications/notification-crypto.js'
import { ReadBudget } from '../../cloud-relay/src/notifications/read-budget.js'
import { planShards } from '../../cloud-relay/src/notifications/shard-planner.js'
import { NotificationInbox } from '../../cloud-relay/src/notifications/notification-inbox.js'
import { registerWebhookRoutes, WebhookQueue } from '../../cloud-relay/src/notifications/webhook-routes.js'
import { loadSealer, SealError, Sealer } from '../../cloud-relay/src/secrets/sealer.js'

t.test('sealing: round trip, purpose bound, a wrong key says what to do, the key file is created 0600', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'seal-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const keyFile = join(dir, 'sub', 'seal.key')
  const sealer = await loadSealer({ keyFile })
  t.equal((await stat(keyFile)).mode & 0o777, 0o600)
  const sealed = sealer.seal('refresh-token-cache', 'msal token cache')
  t.notMatch(sealed, /refresh-token-cache/)
  t.equal(sealer.openText(sealed, 'msal token cache'), 'refresh-token-cache')
  t.throws(() => sealer.open(sealed, 'notification certificate key'), SealError, 'sealed for another purpose')
  const again = await loadSealer({ keyFile })
  t.equal(again.openText(sealed, 'msal token cache'), 'refresh-token-cache', 'the same key on the next start')
  t.equal((await readFile(keyFile, 'utf8')).trim().length, 44)
  const other = new Sealer(randomBytes(32), 'RELAY_SEAL_KEY')
  t.throws(() => other.open(sealed, 'msal token cache'), { code: 'SEAL_MISMATCH', message: /RELAY_SEAL_KEY.*Restore the original key.*sign them in again/ })
  const env = await loadSealer({ envKey: randomBytes(32).toString('hex'), keyFile: join(dir, 'unused.key') })
  t.equal(env.source, 'RELAY_SEAL_KEY')
  await t.rejects(loadSealer({ envKey: 'short', keyFile }), /not 32 bytes/)
})

t.test('shard planner: at most N per shard, one per account, stable, the rest polled', async (t) => {
  const people = Array.from({ length: 25 }, (_, i) => `u${String(i).padStart(2, '0')}`)
  const first = planShards(people, ['a', 'b'], new Map(), 10)
  t.equal(first.shards.get('a')?.length, 10)
  t.equal(first.shards.get('b')?.length, 10)
  t.equal(first.unsubscribed.length, 5)
  // One person leaves, one arrives: shard b is untouched.
  const next = planShards([...people.filter((p) => p !== 'u00'), 'u99'], ['a', 'b'], first.shards, 10)
  t.same(next.shards.get('b'), first.shards.get('b'))
  t.notOk(next.shards.get('a')?.includes('u00'))
  // An account goes: its people move to the other account's free room or to polling.
  const fewer = planShards(people.slice(0, 15), ['b'], first.shards, 10)
  t.equal(fewer.shards.size, 1)
  t.equal(fewer.unsubscribed.length, 5)
  t.same(planShards([], ['a'], first.shards, 10).shards.size, 0, 'no people, no shard')
})

t.test('notification crypto: Graph\'s scheme decrypts; the HMAC is checked before any decryption', async (t) => {
  const cert = createNotificationCertificate(Date.now())
  const x509 = new X509Certificate(cert.certificatePem)
  t.ok(x509.verify(x509.publicKey), 'self-signed and valid')
  t.equal(x509.publicKey.asymmetricKeyDetails?.modulusLength, 2048)
  const key = createPrivateKey(cert.privateKeyPem)
  const encrypt = (value: unknown) => {
    const aes = randomBytes(32)
    const cipher = createCipheriv('aes-256-cbc', aes, aes.subarray(0, 16))
    const data = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()])
    return {
      data: data.toString('base64'),
      dataSignature: createHmac('sha256', aes).update(data).digest('base64'),
      dataKey: publicEncrypt({ key: x509.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aes).toString('base64'),
      encryptionCertificateId: cert.id,
    }
  }
  const keyFor = (id: string) => (id === cert.id ? key : undefined)
  t.same(decryptResourceData(encrypt({ id: 'x', availability: 'Busy' }), keyFor), { id: 'x', availability: 'Busy' })
  const wrong = { ...encrypt({ a: 1 }), encryptionCertificateId: 'other' }
  const reason = (run: () => unknown) => {
    try {
      run()
    } catch (err) {
      return err instanceof DecryptError ? err.reason : 'other'
    }
    return 'none'
  }
  t.equal(reason(() => decryptResourceData(wrong, keyFor)), 'unknown-certificate')
  const truncated = encrypt({ a: 1 })
  truncated.data = Buffer.from(truncated.data, 'base64').subarray(0, 8).toString('base64')
  t.equal(reason(() => decryptResourceData(truncated, keyFor)), 'bad-signature')
  const otherKey = encrypt({ a: 1 })
  otherKey.dataKey = randomBytes(256).toString('base64')
  t.equal(reason(() => decryptResourceData(otherKey, keyFor)), 'bad-key')
})

t.test('read budget: a sliding window shared by everyone of the tenant, and Retry-After', async (t) => {
  let now = 0
  const clock = { now: () => now, setTimeout: () => ({}) as never, clearTimeout: () => undefined }
  const budget = new ReadBudget(clock, 3, 30_000)
  t.ok(budget.take().ok)
  t.ok(budget.take().ok)
  now = 10_000
  t.ok(budget.take().ok)
  t.same(budget.take(), { ok: false, waitMs: 20_000 })
  now = 30_000
  t.ok(budget.take().ok, 'the first two left the window')
  budget.backOff(5_000)
  t.same(budget.take(), { ok: false, waitMs: 5_000 })
})

t.test('webhook: validation handshake echoes the decoded token as text/plain while a create is pending; notifications get 202; a full queue 503', async (t) => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const logger = pino({ level: 'silent' })
  const counters = new Counters()
  const checked: string[] = []
  const inbox = new NotificationInbox({
    logger,
    counters,
    certificateKey: () => undefined,
    onReadings: async () => undefined,
    // The validation-token check is where processing waits (the authority's keys would be fetched there).
    validationTokens: { check: async (tenantId) => { await gate; checked.push(tenantId); return undefined } },
  })
  inbox.register('s1', { tenantId: 'contoso', clientState: 'cs', onLifecycle: () => undefined })
  const queue = new WebhookQueue(inbox, { logger, counters }, 2)
  const app = Fastify()
  registerWebhookRoutes(app, { queue, inbox, logger })
  t.teardown(() => app.close())
  const token = 'Validation: Token with spaces and symbols=/+'
  inbox.expect('pending', { tenantId: 'contoso', clientState: 'pending', onLifecycle: () => undefined })
  for (const url of ['/graph/notifications', '/graph/lifecycle']) {
    const r = await app.inject({ method: 'POST', url: `${url}?validationToken=${encodeURIComponent(token)}`, headers: { 'content-type': 'text/plain; charset=utf-8' }, payload: '' })
    t.equal(r.statusCode, 200)
    t.match(r.headers['content-type'], /^text\/plain/)
    t.equal(r.body, token)
  }
  inbox.forget('pending')
  const post = (n: number) => app.inject({ method: 'POST', url: '/graph/notifications', payload: { value: [{ subscriptionId: 's1', clientState: 'cs', n }] } })
  t.equal((await post(1)).statusCode, 202)
  t.equal((await post(2)).statusCode, 202)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal((await post(3)).statusCode, 202)
  const full = await post(4)
  t.equal(full.statusCode, 503, 'Graph retries a 5xx later')
  release()
  await queue.idle()
  t.equal(checked.length, 3)
})
