import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import t from 'tap'
import { createEnvelope, encodeEnvelope } from '../../gateway/protocol/codec.js'
import { MAX_PAYLOAD_BYTES } from '../../gateway/protocol/version.js'
import { systemClock } from '#kernel/clock.js'
import { EnrollmentClient } from '../../gateway/src/identity/enrollment-client.js'
import { IdentityStore } from '../../gateway/src/identity/identity-store.js'
import { tryConnect } from '../broker/fixtures/clients.js'
import { eventually } from '../helpers/eventually.js'
import { relayView, startTunnelWorld, untilReady } from './fixtures/tunnel-world.js'

t.test('a rogue client with a valid certificate of its own gets nothing through to the sync engine', async (t) => {
  t.setTimeout(120_000)
  const world = await startTunnelWorld({ count: 3 })
  t.teardown(() => world.close())
  await untilReady(world, 3)
  const { stack } = world
  const relay = stack.relay!
  const counters = stack.relayCounters
  const victim = stack.gatewayId
  const before = JSON.stringify([...relayView(world)])

  // The rogue is a second, properly enrolled box of the same tenant.
  const rogueDir = await mkdtemp(join(tmpdir(), 'rogue-'))
  t.teardown(() => rm(rogueDir, { recursive: true, force: true }))
  const { code } = await relay.enrollment.createGateway('contoso', { id: 'gw-rogue', name: 'rogue' })
  const rogueStore = new IdentityStore(rogueDir)
  const client = new EnrollmentClient({ store: rogueStore, clock: systemClock, logger: stack.options.logger }, { relayUrl: stack.enrollUrl, caFingerprint: relay.pki.caFingerprint256 })
  const identity = await client.enroll({ code })
  const mqttsUrl = `mqtts://127.0.0.1:${world.proxy.port}`
  const tls = { ca: identity.caPem, cert: identity.certPem, key: identity.keyPem }

  // Reusing the enrollment code.
  await t.rejects(new EnrollmentClient({ store: new IdentityStore(join(rogueDir, 'again')), clock: systemClock, logger: stack.options.logger }, { relayUrl: stack.enrollUrl, caFingerprint: relay.pki.caFingerprint256 }).enroll({ code }),
    { code: 'ENROLL_CODE_USED' }, 'a spent enrollment code is refused')

  // Connecting as the victim with the rogue's certificate.
  const impersonation = await tryConnect(mqttsUrl, { clientId: victim, username: victim, protocolVersion: 4, reconnectPeriod: 0, ...tls })
  t.not(impersonation.kind, 'connected', 'a certificate for gw-rogue cannot connect as the victim')
  impersonation.client.end(true)

  // Each refused publish makes the broker close the connection: a fresh connection for each attempt.
  const connectRogue = () => mqtt.connectAsync(mqttsUrl, { clientId: 'gw-rogue', username: 'gw-rogue', protocolVersion: 4, reconnectPeriod: 0, ...tls })
  const attempt = async (topic: string, payload: Buffer, counter: string, what: string) => {
    const before = counters.get(counter)
    const c = await connectRogue()
    c.publish(topic, payload, { qos: 1 })
    await eventually(() => counters.get(counter) > before || undefined, what)
    await c.endAsync(true).catch(() => undefined)
  }

  // Publishing as the victim: a well-formed "extension 301 is busy" under the victim's topic root.
  const forged = createEnvelope('endpoint', { connectorId: 'osbiz-main', endpointId: '301', state: 'busy', calls: 1, dnd: true, dndOwner: 'user', changedAt: Date.now(), cause: 'call.connected' }, { gatewayId: victim, seq: 1e12 })
  await attempt(`pbxgw/v1/${victim}/evt/endpoint`, encodeEnvelope(forged), 'broker.publish_denied.foreign_root', 'publishing as another gateway: denied and counted')
  // A command, on its own root.
  const command = createEnvelope('cmd.setDnd', { connectorId: 'osbiz-main', endpointId: '301', dnd: true, reason: 'rogue' }, { gatewayId: 'gw-rogue', seq: 1 })
  await attempt('pbxgw/v1/gw-rogue/cmd/setDnd', encodeEnvelope(command), 'broker.publish_denied.command', 'publishing a command: denied and counted')
  // An oversized payload on its own root.
  await attempt('pbxgw/v1/gw-rogue/evt/endpoint', Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20), 'broker.publish_denied.payload_too_large', 'an oversized payload: denied and counted')
  t.pass('publishing as another gateway, a command and an oversized payload: each denied and counted')

  const rogue = await connectRogue()
  t.teardown(() => rogue.endAsync(true).catch(() => undefined))
  // Subscribing to another gateway's commands, to every gateway's, or to everything of the victim.
  for (const filter of [`pbxgw/v1/${victim}/cmd/#`, 'pbxgw/v1/+/cmd/#', `pbxgw/v1/${victim}/#`]) {
    await t.rejects(rogue.subscribeAsync(filter, { qos: 1 }), /Subscribe error/, `subscribing to ${filter}: SUBACK 0x80`)
  }
  t.ok(counters.get('broker.subscribe_denied') >= 3, 'the refused subscriptions are counted')

  // A payload that fails the schema, on its own root: the relay drops and counts it.
  const invalidBefore = counters.get('relay.invalid_messages')
  await rogue.publishAsync('pbxgw/v1/gw-rogue/evt/endpoint', Buffer.from(JSON.stringify({ v: 1, id: 'x', ts: Date.now(), gatewayId: 'gw-rogue', seq: 1, type: 'endpoint', data: { endpointId: 301 } })), { qos: 1 })
  await eventually(() => counters.get('relay.invalid_messages') > invalidBefore || undefined, 'the relay to drop the invalid payload')
  t.ok(world.lines().some((l) => /dropped an invalid message/.test(l.msg)), 'a payload failing the schema is dropped, counted and logged')

  // An expired certificate for the rogue's own id, issued by the right CA.
  const expired = await relay.pki.issueClientCertificate('gw-rogue', { now: Date.now() - 40 * 86_400_000, validityDays: 30 })
  const late = await tryConnect(mqttsUrl, { clientId: 'gw-rogue', username: 'gw-rogue', protocolVersion: 4, reconnectPeriod: 0, ca: identity.caPem, cert: expired.certPem, key: expired.keyPem })
  t.not(late.kind, 'connected', 'an expired certificate is refused')
  late.client.end(true)
  await eventually(() => counters.get('broker.tls_rejected') >= 1 || undefined, 'the refusal counted')

  // Revocation: the open connection is closed at once, and the certificate no longer gets in.
  await relay.enrollment.revoke('gw-rogue', 'test: rogue box', 'test')
  await eventually(() => !rogue.connected || undefined, 'the revoked rogue cut off', 10_000)
  const again = await tryConnect(mqttsUrl, { clientId: 'gw-rogue', username: 'gw-rogue', protocolVersion: 4, reconnectPeriod: 0, ...tls })
  t.not(again.kind, 'connected', 'the revoked certificate cannot reconnect')
  again.client.end(true)
  await t.rejects(relay.enrollment.newCode('gw-rogue'), /revoked/i, 'a revoked gateway gets no new enrollment code')

  t.equal(JSON.stringify([...relayView(world)]), before, 'the victim\'s endpoints at the relay are untouched')
  t.equal([...relay.engine.graphUserIds('contoso')].length, 3, 'no person was added or changed by the rogue')
  t.ok(world.lines().filter((l) => /broker (denied|refused)/.test(l.msg)).length >= 4, 'every refusal is in the log')
})
