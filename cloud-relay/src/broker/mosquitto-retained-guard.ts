import mqtt, { type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import { TOPIC_PREFIX, parseTopic } from '#protocol/topics.js'
import type { Counters } from '#kernel/counters.js'
import { RetainedLedger } from './retain-policy.js'

export interface MosquittoRetainedGuardOptions {
  /** mqtts URL of Mosquitto. */
  url: string
  caPem: string
  /** A relay certificate with CN `relay:<name>.retained` (retainedGuardCommonName; its ACL block allows it). */
  certPem: string
  keyPem: string
}

/**
 * Mosquitto's ACL cannot say "publish but do not retain", so a box could fill the broker's memory with retained
 * messages on topics of its own choosing. This client watches every retained message under the topic root
 * (MQTT 5 with retain-as-published, so live ones are seen too, and all existing ones at subscribe) and clears,
 * with an empty retained publish, what the retain policy does not allow: anything but a gateway's status and
 * link/{connectorId}, more than 64 links, more than 16 KiB. One log line per cleared topic.
 */
export class MosquittoRetainedGuard {
  readonly #options: MosquittoRetainedGuardOptions
  readonly #log: Logger
  readonly #counters: Counters
  readonly #ledger = new RetainedLedger()
  #client: MqttClient | undefined

  constructor(options: MosquittoRetainedGuardOptions, deps: { logger: Logger; counters: Counters }) {
    this.#options = options
    this.#log = deps.logger.child({ component: 'mosquitto-retained-guard' })
    this.#counters = deps.counters
  }

  async start(): Promise<void> {
    if (this.#client) return
    const { url, caPem, certPem, keyPem } = this.#options
    const client = mqtt.connect(url, { protocolVersion: 5, clean: true, reconnectPeriod: 2000, connectTimeout: 10_000, ca: caPem, cert: certPem, key: keyPem })
    this.#client = client
    client.on('message', (topic, payload, packet) => {
      if (packet.retain) this.#onRetained(client, topic, payload)
    })
    client.on('error', (err) => this.#log.warn({ err: err.message }, 'retained-message guard: broker connection error'))
    client.on('connect', () => {
      client.subscribe(`${TOPIC_PREFIX}/#`, { qos: 0, rap: true }, (err) => {
        if (err) this.#log.error({ err: err.message }, 'retained-message guard could not subscribe: check its ACL block in Mosquitto\'s acl file')
      })
    })
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve())
      client.once('error', reject)
    })
  }

  async stop(): Promise<void> {
    const client = this.#client
    this.#client = undefined
    await client?.endAsync(true)
  }

  #onRetained(client: MqttClient, topic: string, payload: Buffer): void {
    if (payload.length === 0) {
      this.#ledger.cleared(topic)
      return
    }
    if (parseTopic(topic)?.kind === 'command') return // the relay's own
    const gatewayId = topic.split('/')[2] ?? ''
    const verdict = this.#ledger.admit(gatewayId, topic, payload.length)
    if (verdict.ok) return
    this.#counters.inc('broker.retained_cleared')
    this.#counters.inc(`broker.retained_cleared.${verdict.reason}`)
    this.#log.warn({ gatewayId: gatewayId.slice(0, 100), topic: topic.slice(0, 200), bytes: payload.length, why: verdict.why }, 'relay cleared a retained message a gateway may not keep')
    client.publish(topic, Buffer.alloc(0), { qos: 1, retain: true }, (err) => {
      if (err) this.#log.error({ gatewayId: gatewayId.slice(0, 100), topic: topic.slice(0, 200), err: err.message }, 'retained-message guard could not clear a retained message')
    })
  }
}
