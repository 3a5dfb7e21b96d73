import { createHash } from 'node:crypto'
import mqtt from 'mqtt'
import t from 'tap'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { parseRange } from '../../cloud-relay/src/updates/bundle-routes.js'
import { createEnvelope, decodeMessage, encodeEnvelope } from '../../gateway/protocol/codec.js'
import { topics } from '../../gateway/protocol/topics.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { createPostgresSchema } from '../helpers/postgres.js'
import type { TapTest } from '../helpers/tap-types.js'
import { bundleFolder, startUpdateRelay, testSealer, updateDatabase, UPDATE_API_TOKEN } from '../helpers/update-relay.js'

const gateways = [{ id: 'gw1', tenantId: 't1' }, { id: 'gw2', tenantId: 't1' }, { id: 'gw3', tenantId: 't2' }]
const BUNDLE = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251))
const SHA = createHash('sha256').update(BUNDLE).digest('hex')

async function setup(t: TapTest, databaseUrl?: string) {
  const { logger } = captureLogger('silent')
  const db = await updateDatabase(logger, gateways, databaseUrl)
  t.teardown(() => db.close())
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: true }, { relayUsername: 'relay', relayPassword: 'relay-pw', verifyGateway: (_id, pw) => pw === 'box-pw' }, { logger, counters: new Counters() })
  await broker.start()
  t.teardown(() => broker.stop())
  const folder = await bundleFolder()
  t.teardown(folder.cleanup)
  await folder.write('v2.raucb', BUNDLE)
  const sealer = testSealer()
  const relay = await startUpdateRelay({ logger, db, broker, bundleDir: folder.dir, gateways, sealer, commandTimeoutMs: 1500 })
  t.teardown(() => relay.stop())
  return { logger, db, broker, folder, sealer, relay }
}

type Relay = Awaited<ReturnType<typeof setup>>['relay']
const api = (relay: Relay, method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown, headers: Record<string, string> = { authorization: `Bearer ${UPDATE_API_TOKEN}` }) =>
  relay.http.inject({ method, url, headers, ...(payload !== undefined ? { payload: payload as string } : {}) })

t.test('parseRange takes one satisfiable range', async (t) => {
  t.same(parseRange('bytes=0-99', 1000), { start: 0, end: 99 })
  t.same(parseRange('bytes=900-', 1000), { start: 900, end: 999 })
  t.same(parseRange('bytes=-100', 1000), { start: 900, end: 999 })
  t.same(parseRange('bytes=990-5000', 1000), { start: 990, end: 999 })
  for (const bad of ['bytes=1000-', 'bytes=5-2', 'bytes=0-1,5-6', 'items=0-1', 'bytes=-', 'bytes=-0']) t.equal(parseRange(bad, 1000), 'bad', bad)
})

t.test('every update admin route refuses a caller without the token, and bad input in words', async (t) => {
  const { relay } = await setup(t)
  const routes: Array<['GET' | 'POST' | 'PUT', string]> = [
    ['GET', '/api/v1/updates/releases'], ['POST', '/api/v1/updates/releases'], ['PUT', '/api/v1/updates/releases/2.0.0/bundle'],
    ['GET', '/api/v1/updates/rollouts'], ['POST', '/api/v1/updates/rollouts'], ['GET', '/api/v1/updates/rollouts/r-00000000'],
    ['POST', '/api/v1/updates/rollouts/r-00000000/pause'], ['POST', '/api/v1/updates/rollouts/r-00000000/resume'],
  ]
  for (const [method, url] of routes) {
    t.equal((await api(relay, method, url, undefined, {})).statusCode, 401, `${method} ${url} without a token`)
    t.equal((await api(relay, method, url, undefined, { authorization: 'Bearer wrong-token-wrong-token-wrong-token' })).statusCode, 401, `${method} ${url} with a wrong token`)
  }
  const bad: Array<[string, 'POST' | 'PUT' | 'GET', string, unknown, number, RegExp]> = [
    ['a version with a slash', 'POST', '/api/v1/updates/releases', { version: '../x', file: 'v2.raucb' }, 400, /release version of letters, digits/],
    ['a path instead of a file name', 'POST', '/api/v1/updates/releases', { version: '2.0.0', file: '../../etc/passwd' }, 400, /file name in the relay's bundle folder/],
    ['a file that is not there', 'POST', '/api/v1/updates/releases', { version: '2.0.0', file: 'nope.raucb' }, 400, /No bundle file nope.raucb.*copy it there first/],
    ['a rollout of no release', 'POST', '/api/v1/updates/rollouts', { version: '9.9.9', target: { kind: 'all' } }, 400, /No release 9.9.9: register or upload/],
    ['an unknown rollout id form', 'GET', '/api/v1/updates/rollouts/xyz', undefined, 400, /rollout id such as r-1a2b3c4d/],
    ['an unknown rollout', 'POST', '/api/v1/updates/rollouts/r-00000000/pause', undefined, 404, /No unfinished rollout r-00000000/],
  ]
  for (const [what, method, url, body, status, message] of bad) {
    const res = await api(relay, method, url, body)
    t.equal(res.statusCode, status, `${what}: ${res.statusCode}`)
    t.match(res.json<{ error: { message: string } }>().error.message, message, `${what}: ${res.json<{ error: { message: string } }>().error.message}`)
  }
  t.equal((await api(relay, 'POST', '/api/v1/updates/releases', { version: '2.0.0', file: 'v2.raucb' })).statusCode, 201)
  const rolloutBad: Array<[string, unknown, RegExp]> = [
    ['falling stages', { stages: [50, 10, 100] }, /rising, ending at 100/],
    ['stages not ending at 100', { stages: [10, 50] }, /ending at 100/],
    ['a threshold above 1', { failureThreshold: 2 }, /failureThreshold/],
    ['an install time without a zone', { installAt: '2026-12-04 02:00' }, /installAt|ISO 8601/],
    ['a target of nobody', { target: { kind: 'tenant', tenantId: 'nobody' } }, /tenant nobody has no enrolled gateway/],
    ['a percentage of 0', { target: { kind: 'percentage', percent: 0 } }, /percent.*more than 0 and at most 100/],
    ['a gateway target without its id', { target: { kind: 'gateway' } }, /of kind .{0,2}gateway.{0,2} names its gatewayId/],
  ]
  for (const [what, change, message] of rolloutBad) {
    const res = await api(relay, 'POST', '/api/v1/updates/rollouts', { version: '2.0.0', target: { kind: 'all' }, ...(change as object) })
    t.equal(res.statusCode, 400, `${what}: ${res.statusCode}`)
    t.match(res.body, message, `${what}: ${res.body.slice(0, 300)}`)
    t.notMatch(res.body, /#\/|\/properties\//, `${what}: no raw schema path`)
  }
  t.equal((await api(relay, 'POST', '/api/v1/updates/releases', { version: '2.0.0', file: 'v2.raucb' })).statusCode, 409, 'a version is released once')
})

t.test('an upload is streamed to disk, hashed, size-limited and refused when empty or of the wrong type', async (t) => {
  const { relay } = await setup(t)
  const put = (version: string, body: Buffer, type = 'application/octet-stream') =>
    relay.http.inject({ method: 'PUT', url: `/api/v1/updates/releases/${version}/bundle?notes=fixes`, headers: { authorization: `Bearer ${UPDATE_API_TOKEN}`, 'content-type': type }, payload: body })
  const ok = await put('3.0.0', BUNDLE)
  t.equal(ok.statusCode, 201, ok.body)
  t.match(ok.json(), { version: '3.0.0', size: BUNDLE.length, sha256: SHA, notes: 'fixes', createdBy: 'api-token' })
  const tooBig = await put('3.0.1', Buffer.alloc(64 * 1024 + 1))
  t.equal(tooBig.statusCode, 413)
  t.match(tooBig.body, /larger than the 65536 bytes the relay takes/)
  t.equal((await put('3.0.2', Buffer.alloc(0))).statusCode, 400)
  const json = await put('3.0.3', BUNDLE, 'application/json')
  t.equal(json.statusCode, 400)
  t.equal((await api(relay, 'GET', '/api/v1/updates/releases')).json<{ releases: unknown[] }>().releases.length, 1, 'only the good upload became a release')
})

t.test('the bundle route serves enrolled gateways with a token only, with Range, ETag and Content-Length', async (t) => {
  const { relay } = await setup(t)
  t.equal((await api(relay, 'POST', '/api/v1/updates/releases', { version: '2.0.0', file: 'v2.raucb' })).statusCode, 201)
  const url = '/updates/v1/bundles/2.0.0'
  const token = relay.tokens.issue('gw1', '2.0.0', Date.now())
  const get = (headers: Record<string, string>, path = url, method: 'GET' | 'HEAD' = 'GET') => relay.http.inject({ method, url: path, headers })

  const noToken = await get({})
  t.equal(noToken.statusCode, 401)
  t.match(noToken.json(), { error: { message: /only to an enrolled gateway with the download token/ } })
  t.equal((await get({ authorization: `Bearer ${relay.tokens.issue('gw1', '1.0.0', Date.now())}` })).statusCode, 401, 'a token for another version')
  t.equal((await get({ authorization: `Bearer ${relay.tokens.issue('gw1', '2.0.0', Date.now() - 2 * 3_600_000)}` })).statusCode, 401, 'an expired token')
  t.match((await get({ authorization: `Bearer ${token.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'))}` })).body, /not valid for this version/, 'a tampered token')
  const forged = `${Buffer.from('gw2').toString('base64url')}.${token.split('.').slice(1).join('.')}`
  t.equal((await get({ authorization: `Bearer ${forged}` })).statusCode, 401, 'another gateway\'s name on gw1\'s token')
  t.equal((await get({ authorization: `Bearer ${relay.tokens.issue('stranger', '2.0.0', Date.now())}` })).statusCode, 403, 'a gateway the relay does not know')

  const full = await get({ authorization: `Bearer ${token}` })
  t.equal(full.statusCode, 200)
  t.equal(full.headers['content-length'], String(BUNDLE.length))
  t.equal(full.headers['etag'], `"${SHA}"`)
  t.equal(full.headers['accept-ranges'], 'bytes')
  t.ok(full.rawPayload.equals(BUNDLE), 'the whole bundle')
  const head = await get({ authorization: `Bearer ${token}` }, url, 'HEAD')
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-length'], String(BUNDLE.length))
  t.equal(head.rawPayload.length, 0)

  const part = await get({ authorization: `Bearer ${token}`, range: 'bytes=4000-' })
  t.equal(part.statusCode, 206)
  t.equal(part.headers['content-range'], `bytes 4000-9999/${BUNDLE.length}`)
  t.equal(part.headers['content-length'], '6000')
  t.ok(part.rawPayload.equals(BUNDLE.subarray(4000)), 'the rest of the bundle')
  const sameEtag = await get({ authorization: `Bearer ${token}`, range: 'bytes=0-9', 'if-range': `"${SHA}"` })
  t.equal(sameEtag.statusCode, 206)
  const otherEtag = await get({ authorization: `Bearer ${token}`, range: 'bytes=0-9', 'if-range': '"0000"' })
  t.equal(otherEtag.statusCode, 200, 'If-Range of another bundle gets the whole file')
  const unsatisfiable = await get({ authorization: `Bearer ${token}`, range: 'bytes=20000-' })
  t.equal(unsatisfiable.statusCode, 416)
  t.equal(unsatisfiable.headers['content-range'], `bytes */${BUNDLE.length}`)
  t.match(unsatisfiable.body, /not one range within the bundle's 10000 bytes/)
  t.equal((await get({ authorization: `Bearer ${token}`, range: 'bytes=0-1,4-5' })).statusCode, 416, 'several ranges are refused')
  t.equal((await get({ authorization: `Bearer ${token}` }, '/updates/v1/bundles/..%2Fetc')).statusCode, 400, 'a bad version in the path')
  t.equal((await get({ authorization: `Bearer ${relay.tokens.issue('gw1', '7.0.0', Date.now())}` }, '/updates/v1/bundles/7.0.0')).statusCode, 404)

  relay.revoked.add('gw1')
  const revoked = await get({ authorization: `Bearer ${token}` })
  t.equal(revoked.statusCode, 403, 'a revoked gateway is refused even with a valid token')
  t.match(revoked.body, /may not fetch updates: the gateway is revoked/)
})

for (const backend of ['pglite', 'postgres'] as const) {
  t.test(`${backend}: a rollout's state survives a relay restart; pause and resume; boxes offline are told when they come online`, async (t) => {
    let databaseUrl: string | undefined
    if (backend === 'postgres') {
      const schema = await createPostgresSchema()
      t.teardown(schema.drop)
      databaseUrl = schema.url
    }
    const { logger, db, broker, folder, sealer, relay } = await setup(t, databaseUrl)
    t.equal((await api(relay, 'POST', '/api/v1/updates/releases', { version: '2.0.0', file: 'v2.raucb' })).statusCode, 201)
    // gw1 is connected and answers; gw2 and gw3 are offline.
    const received: string[] = []
    const box = await mqtt.connectAsync(relay.brokerUrl, { clientId: 'gw1', username: 'gw1', password: 'box-pw', protocolVersion: 4 })
    t.teardown(() => box.endAsync(true))
    let seq = 0
    box.on('message', (topic, payload) => {
      const decoded = decodeMessage(topic, payload)
      if (!decoded.ok || decoded.envelope.type !== 'cmd.update') return
      received.push(decoded.envelope.data.updateId)
      box.publish(topics.result('gw1', decoded.envelope.id), encodeEnvelope(createEnvelope('result', { correlationId: decoded.envelope.id, command: 'cmd.update', ok: true }, { gatewayId: 'gw1', seq: ++seq })), { qos: 1 })
      box.publish(topics.update('gw1'), encodeEnvelope(createEnvelope('update', { updateId: decoded.envelope.data.updateId, version: '2.0.0', state: 'downloading', bytes: 10, total: BUNDLE.length, runningVersion: '1.0.0', slot: 'A', at: Date.now() }, { gatewayId: 'gw1', seq: ++seq })), { qos: 1 })
    })
    await box.subscribeAsync(topics.commandFilter('gw1'), { qos: 1 })

    const created = await api(relay, 'POST', '/api/v1/updates/rollouts', { version: '2.0.0', target: { kind: 'tenant', tenantId: 't1' }, stages: [100], failureThreshold: 0.5, installAt: '2026-12-04T02:00:00Z' })
    t.equal(created.statusCode, 201, created.body)
    const id = created.json<{ id: string }>().id
    await eventually(async () => (await relay.engine.get(id))?.boxes.find((b) => b.gatewayId === 'gw1')?.state === 'downloading', 'gw1 downloading')
    await eventually(async () => (await relay.engine.get(id))?.boxes.find((b) => b.gatewayId === 'gw2')?.reason.includes('not reached yet'), 'gw2 not reached', 5000)
    const conflict = await api(relay, 'POST', '/api/v1/updates/rollouts', { version: '2.0.0', target: { kind: 'gateway', gatewayId: 'gw1' } })
    t.equal(conflict.statusCode, 409, 'a box in a running rollout is not put in a second one')
    t.match(conflict.body, /still in rollout r-/)
    t.match((await api(relay, 'POST', `/api/v1/updates/rollouts/${id}/pause`)).json(), { state: 'paused', stateText: /Paused by an admin/ })
    t.equal((await api(relay, 'POST', `/api/v1/updates/rollouts/${id}/pause`)).statusCode, 409, 'pausing twice says it is not running')

    // Restart: the engine, link and routes go; the database and the broker stay.
    await relay.stop()
    const again = await startUpdateRelay({ logger, db, broker, bundleDir: folder.dir, gateways, sealer, commandTimeoutMs: 1500 })
    t.teardown(() => again.stop())
    const view = (await api(again, 'GET', `/api/v1/updates/rollouts/${id}`)).json<{ rollout: { state: string; installAt: string }; gateways: Array<{ gatewayId: string; state: string; bytes: number | null; stateText: string }> }>()
    t.match(view.rollout, { state: 'paused', installAt: '2026-12-04T02:00:00Z' }, 'still paused after the restart')
    t.match(view.gateways, [{ gatewayId: 'gw1', state: 'downloading', bytes: 10, stateText: /Downloading the new version: 0 %/ }, { gatewayId: 'gw2', state: 'queued' }])
    t.notOk(view.gateways.some((g) => g.gatewayId === 'gw3'), 'the other tenant is not in the rollout')
    t.equal((await api(again, 'POST', `/api/v1/updates/rollouts/${id}/resume`)).json<{ state: string }>().state, 'running')

    // gw2 comes online: it is told now (its birth), gw3 never.
    const gw2: string[] = []
    const box2 = await mqtt.connectAsync(again.brokerUrl, { clientId: 'gw2', username: 'gw2', password: 'box-pw', protocolVersion: 4 })
    t.teardown(() => box2.endAsync(true))
    box2.on('message', (topic, payload) => {
      const decoded = decodeMessage(topic, payload)
      if (decoded.ok && decoded.envelope.type === 'cmd.update') gw2.push(decoded.envelope.data.token)
    })
    await box2.subscribeAsync(topics.commandFilter('gw2'), { qos: 1 })
    box2.publish(topics.status('gw2'), encodeEnvelope(createEnvelope('status', { state: 'online', version: '1.0.0', startedAt: Date.now(), slot: 'A' }, { gatewayId: 'gw2', seq: 1 })), { qos: 1, retain: true })
    await eventually(() => gw2.length > 0, 'gw2 told after its birth', 5000)
    t.equal(again.tokens.verify(gw2[0]!, '2.0.0', Date.now()).ok, true, 'with a token the restarted relay accepts (key in the store)')
    t.same(received, [id], 'gw1 got the command once, not again after the restart')
    t.equal((await again.updates.gatewaySlots()).get('gw1'), 'A', 'the reported slot is stored')
  })
}
