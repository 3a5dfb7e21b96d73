import { createHash } from 'node:crypto'
import mqtt, { type MqttClient } from 'mqtt'
import t from 'tap'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { createEnvelope, decodeMessage, encodeEnvelope } from '../../gateway/protocol/codec.js'
import type { UpdateProgressData } from '../../gateway/protocol/schemas.js'
import { topics } from '../../gateway/protocol/topics.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { bundleFolder, startUpdateRelay, testSealer, updateDatabase, UPDATE_API_TOKEN } from '../helpers/update-relay.js'

const GATEWAYS = Number(process.env.UPDATE_FLEET_SIZE ?? 200)
const FAILING_SHARE = 0.1
const THRESHOLD = 0.05
const STAGES = [10, 50, 100]

/**
 * One simulated box: a real MQTT client on the real broker that takes cmd/update, answers it, fetches the bundle's
 * headers with the token it was given (through the relay's bundle route), and reports progress on its update topic
 * like the box's agent: healthy, or rolled back with a reason when it is one of the failing tenth.
 */
class FakeBox {
  readonly commands: string[] = []
  #client: MqttClient | undefined
  #seq = 0

  constructor(readonly id: string, readonly failing: boolean, readonly fetchHead: (url: string, token: string) => Promise<number>) {}

  async connect(url: string): Promise<void> {
    const client = mqtt.connect(url, { clientId: this.id, username: this.id, password: 'box-pw', protocolVersion: 4, reconnectPeriod: 200 })
    this.#client = client
    client.on('message', (topic, payload) => void this.#onMessage(topic, payload))
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve())
      client.once('error', reject)
    })
    await client.subscribeAsync(topics.commandFilter(this.id), { qos: 1 })
    this.#publish(topics.status(this.id), createEnvelope('status', { state: 'online', version: '1.0.0', startedAt: Date.now(), slot: 'A' }, { gatewayId: this.id, seq: ++this.#seq }), true)
  }

  async close(): Promise<void> {
    await this.#client?.endAsync(true)
  }

  #publish(topic: string, envelope: ReturnType<typeof createEnvelope>, retain = false): void {
    this.#client?.publish(topic, encodeEnvelope(envelope), { qos: 1, retain })
  }

  async #onMessage(topic: string, payload: Buffer): Promise<void> {
    const decoded = decodeMessage(topic, payload)
    if (!decoded.ok || decoded.envelope.type !== 'cmd.update') return
    const command = decoded.envelope
    this.commands.push(command.data.version)
    this.#publish(topics.result(this.id, command.id), createEnvelope('result', { correlationId: command.id, command: 'cmd.update', ok: true }, { gatewayId: this.id, seq: ++this.#seq }))
    const report = (state: UpdateProgressData['state'], extra: Partial<UpdateProgressData> = {}, running = '1.0.0', slot = 'A') =>
      this.#publish(topics.update(this.id), createEnvelope('update', { updateId: command.data.updateId, version: command.data.version, state, runningVersion: running, slot, at: Date.now(), ...extra }, { gatewayId: this.id, seq: ++this.#seq }))
    report('queued')
    const status = await this.fetchHead(command.data.url, command.data.token)
    if (status !== 200) {
      report('failed', { reason: `the relay answered ${status} to the download` })
      return
    }
    report('downloading', { bytes: command.data.size, total: command.data.size })
    report('verifying')
    report('installing')
    report('rebooting')
    if (this.failing) report('rolled-back', { reason: 'the gateway service did not start within 3 boot attempts' }, '1.0.0', 'A')
    else report('healthy', {}, command.data.version, 'B')
  }
}

t.test(`a rollout to ${GATEWAYS} gateways with ${FAILING_SHARE * 100} % failing halts at the threshold and touches no box outside its stage`, async (t) => {
  const { logger } = captureLogger('warn')
  const ids = Array.from({ length: GATEWAYS }, (_, i) => `gw${String(i).padStart(3, '0')}`)
  const gateways = ids.map((id, i) => ({ id, tenantId: i % 2 === 0 ? 'tenant-a' : 'tenant-b' }))
  // Every tenth box by a hash of its id fails: spread over the stages like a real bad batch, not by position.
  const failing = new Set([...ids].sort((a, b) => createHash('sha256').update(a).digest('hex').localeCompare(createHash('sha256').update(b).digest('hex'))).slice(0, GATEWAYS * FAILING_SHARE))
  const db = await updateDatabase(logger, gateways)
  t.teardown(() => db.close())
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: true }, { relayUsername: 'relay', relayPassword: 'relay-pw', verifyGateway: (id, pw) => ids.includes(id) && pw === 'box-pw' }, { logger, counters: new Counters() })
  await broker.start()
  t.teardown(() => broker.stop())
  const folder = await bundleFolder()
  t.teardown(folder.cleanup)
  const relay = await startUpdateRelay({ logger, db, broker, bundleDir: folder.dir, gateways, sealer: testSealer() })
  t.teardown(() => relay.stop())
  await folder.write('v2.raucb', Buffer.alloc(4096, 7))
  const api = (method: 'GET' | 'POST', url: string, payload?: unknown) => relay.http.inject({ method, url, headers: { authorization: `Bearer ${UPDATE_API_TOKEN}` }, ...(payload ? { payload: payload as Record<string, unknown> } : {}) })
  t.equal((await api('POST', '/api/v1/updates/releases', { version: '2.0.0', file: 'v2.raucb' })).statusCode, 201)

  const fetchHead = async (url: string, token: string) => (await relay.http.inject({ method: 'HEAD', url: new URL(url).pathname, headers: { authorization: `Bearer ${token}` } })).statusCode
  const boxes = ids.map((id) => new FakeBox(id, failing.has(id), fetchHead))
  const connectStart = performance.now()
  await Promise.all(boxes.map((b) => b.connect(relay.brokerUrl)))
  t.teardown(() => Promise.all(boxes.map((b) => b.close())))
  const connectMs = performance.now() - connectStart

  const started = performance.now()
  const created = await api('POST', '/api/v1/updates/rollouts', { version: '2.0.0', target: { kind: 'all' }, stages: STAGES, failureThreshold: THRESHOLD })
  t.equal(created.statusCode, 201, created.body)
  const rolloutId = created.json<{ id: string }>().id
  await eventually(async () => {
    const state = (await api('GET', `/api/v1/updates/rollouts/${rolloutId}`)).json<{ rollout: { state: string } }>().rollout.state
    if (state !== 'halted') throw new Error(`rollout is ${state}`)
    return true
  }, 'the rollout to halt', 60_000)
  const haltedMs = performance.now() - started
  await relay.engine.idle()

  const view = (await api('GET', `/api/v1/updates/rollouts/${rolloutId}`)).json<{ rollout: { state: string; currentStage: number; reason: string; counts: Record<string, number> }; gateways: Array<{ gatewayId: string; stage: number; state: string; stateText: string }> }>()
  const stageOf = new Map(view.gateways.map((g) => [g.gatewayId, g.stage]))
  t.equal(view.gateways.length, GATEWAYS, 'every gateway is in the rollout')
  // The stage it must halt in: the first whose failing share exceeds the threshold.
  const expectedStage = STAGES.findIndex((_, stage) => {
    const members = ids.filter((id) => stageOf.get(id) === stage)
    return members.filter((id) => failing.has(id)).length / members.length > THRESHOLD
  })
  t.ok(expectedStage >= 0, 'with 10 % failing some stage is over a 5 % threshold')
  t.equal(view.rollout.currentStage, expectedStage, `halted in stage ${expectedStage + 1}, the first over the threshold`)
  t.match(view.rollout.reason, /stopped by itself: \d+ of \d+ boxes in stage \d+ \(\d+ %\) rolled back or failed, more than the 5 % allowed/)

  const touched = boxes.filter((b) => b.commands.length > 0).map((b) => b.id)
  const outside = touched.filter((id) => (stageOf.get(id) ?? 99) > expectedStage)
  t.same(outside, [], 'no box outside the halted stage and the stages before it got cmd/update')
  const notTold = view.gateways.filter((g) => g.stage > expectedStage)
  t.ok(notTold.every((g) => g.state === 'waiting' && /not told anything yet/.test(g.stateText)), 'later stages are waiting, in words')
  t.ok(boxes.every((b) => b.commands.length <= 1), 'no box got the command twice')
  const inStage = view.gateways.filter((g) => g.stage <= expectedStage)
  t.equal(touched.length, inStage.length, 'every box of the stages up to the halted one got cmd/update')
  const rolledBack = view.gateways.filter((g) => g.state === 'rolled-back')
  t.ok(rolledBack.every((g) => /Rolled back.*Why: the gateway service did not start within 3 boot attempts/.test(g.stateText)), 'rolled-back boxes say why')

  const list = (await api('GET', '/api/v1/updates/rollouts')).json<{ rollouts: Array<{ id: string; state: string }> }>()
  t.match(list.rollouts, [{ id: rolloutId, state: 'halted' }])
  t.comment(`figures: ${GATEWAYS} gateways connected in ${Math.round(connectMs)} ms; stages ${STAGES.join('/')} %, threshold ${THRESHOLD * 100} %; ` +
    `halted in stage ${expectedStage + 1} after ${Math.round(haltedMs)} ms; ${touched.length} boxes told, ${notTold.length} untouched; ` +
    `counts ${JSON.stringify(view.rollout.counts)}; cmd/update sent ${relay.counters.get('updates.commands_sent')}`)
})
