import { createHash } from 'node:crypto'
import { once } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import { InnovaphoneSimulator } from '../../gateway/src/adapters/innovaphone/simulator/innovaphone-simulator.js'
import { Recorder } from '../helpers/recorder.js'
import type { TapTest } from '../helpers/tap-types.js'
import { APP, USERS } from './fixtures/harness.js'

type Json = Record<string, unknown>

/** A raw AppWebsocket client: what the PBX sends back, as parsed JSON. */
async function rawClient(t: TapTest, sim: InnovaphoneSimulator): Promise<{ ws: WebSocket; received: Recorder<Json>; send: (message: Json) => void }> {
  const ws = new WebSocket(sim.url)
  const received = new Recorder<Json>()
  ws.on('message', (data: Buffer) => received.push(JSON.parse(data.toString('utf8')) as Json))
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  return { ws, received, send: (message) => ws.send(JSON.stringify(message)) }
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

async function simulator(t: TapTest): Promise<InnovaphoneSimulator> {
  const sim = new InnovaphoneSimulator({ users: USERS, ...APP })
  await sim.start()
  t.teardown(() => sim.stop())
  return sim
}

async function challenge(client: Awaited<ReturnType<typeof rawClient>>): Promise<string> {
  const from = client.received.mark()
  client.send({ mt: 'AppChallenge' })
  const result = await client.received.waitFor((m) => m.mt === 'AppChallengeResult', { from })
  return String(result.challenge)
}

t.test('the challenge is up to 16 digits; a digest computed by the documented formula logs in', async (t) => {
  const sim = await simulator(t)
  const client = await rawClient(t, sim)
  const value = await challenge(client)
  t.match(value, /^[0-9]{1,16}$/)
  const info = { product: 'gw', 'a/b': 'x' }
  // The JS SDK's passwordLogin style: sip = app, guid zeros, dn "Admin", with info as compact JSON.
  const fields = { app: APP.appName, domain: '', sip: APP.appName, guid: '00000000000000000000000000000000', dn: 'Admin' }
  const digest = sha256(`${fields.app}:${fields.domain}:${fields.sip}:${fields.guid}:${fields.dn}:${JSON.stringify(info)}:${value}:${APP.appPassword}`)
  client.send({ mt: 'AppLogin', ...fields, info, digest, pbxObj: 'not-covered' })
  t.match(await client.received.waitFor((m) => m.mt === 'AppLoginResult'), { ok: true })
})

t.test('a wrong digest: ok false and the connection closes', async (t) => {
  const sim = await simulator(t)
  const client = await rawClient(t, sim)
  const value = await challenge(client)
  const closed = once(client.ws, 'close')
  client.send({ mt: 'AppLogin', app: APP.appName, domain: '', sip: '', guid: '', dn: '', digest: sha256(`${APP.appName}:::::${value}:wrong`) })
  t.match(await client.received.waitFor((m) => m.mt === 'AppLoginResult'), { ok: false })
  await closed
  t.equal(sim.stats.loginsRefused, 1)
})

t.test('a digest for an old challenge is refused (each challenge is used once)', async (t) => {
  const sim = await simulator(t)
  const client = await rawClient(t, sim)
  const first = await challenge(client)
  await challenge(client)
  client.send({ mt: 'AppLogin', app: APP.appName, domain: '', sip: '', guid: '', dn: '', digest: sha256(`${APP.appName}:::::${first}:${APP.appPassword}`) })
  t.match(await client.received.waitFor((m) => m.mt === 'AppLoginResult'), { ok: false })
})

t.test('before the login nothing is answered; after it src is echoed on results and indications', async (t) => {
  const sim = await simulator(t)
  const client = await rawClient(t, sim)
  client.send({ api: 'RCC', mt: 'Initialize', src: 'early' })
  const value = await challenge(client)
  t.notOk(client.received.items.some((m) => m.src === 'early'), 'ignored before login')
  client.send({ mt: 'AppLogin', app: APP.appName, domain: '', sip: '', guid: '', dn: '', digest: sha256(`${APP.appName}:::::${value}:${APP.appPassword}`) })
  await client.received.waitFor((m) => m.mt === 'AppLoginResult' && m.ok === true)
  client.send({ api: 'RCC', mt: 'Initialize', src: 'init-1' })
  await client.received.waitFor((m) => m.mt === 'InitializeResult' && m.src === 'init-1')
  const infos = client.received.items.filter((m) => m.mt === 'UserInfo')
  t.equal(infos.length, USERS.length)
  t.ok(infos.every((m) => m.src === 'init-1' && typeof m.alert === 'number' && typeof m.channel === 'number'), 'UserInfo with src, alert and channel')
  client.send({ api: 'RCC', mt: 'UserInitialize', cn: 'Alice Adams', src: 'alice-calls' })
  t.match(await client.received.waitFor((m) => m.mt === 'UserInitializeResult'), { src: 'alice-calls', user: Number })
  client.send({ api: 'PbxApi', mt: 'SubscribePresence', sip: 'alice', num: '201', src: 'alice-presence' })
  await client.received.waitFor((m) => m.mt === 'PresenceUpdate' && m.src === 'alice-presence')
  const from = client.received.mark()
  const call = sim.incomingCall('201')
  const info = await client.received.waitFor((m) => m.mt === 'CallInfo' && m.msg === 'r-alert', { from })
  t.match(info, { src: 'alice-calls', call: Number(call), state: 0x84 }, 'CallInfo carries the UserInitialize src; ringing is 0x84')
  t.match(await client.received.waitFor((m) => m.mt === 'UserInfo', { from }), { src: 'init-1', alert: 1, channel: 1 }, 'UserInfo counts follow')
  sim.hangup(call)
  t.match(await client.received.waitFor((m) => m.mt === 'CallInfo' && m.msg === 'del', { from }), { src: 'alice-calls' }, 'every call ends with del')
  sim.setDndAtPhone('201', true)
  t.match(await client.received.waitFor((m) => m.mt === 'PresenceUpdate', { from }), { src: 'alice-presence', presence: [{ contact: 'tel:', activity: 'dnd' }] })
})
