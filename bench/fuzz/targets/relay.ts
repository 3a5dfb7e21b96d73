import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import mqtt, { type MqttClient } from 'mqtt'
import type { Relay } from '../../../cloud-relay/src/app.js'
import type { RelayConfig } from '../../../cloud-relay/src/config/schema.js'
import { ConsoleStore } from '../../../cloud-relay/src/console/console-store.js'
import { hashPassword } from '../../../cloud-relay/src/console/passwords.js'
import { LIFECYCLE_PATH, NOTIFICATION_PATH } from '../../../cloud-relay/src/notifications/webhook-routes.js'
import { createBoxCsr } from '../../../gateway/src/identity/box-csr.js'
import { Stack, type StackOptions } from '../../../scripts/stack.js'
import { jsonRouteCases, jsonRouteRunner, outcomeOf, sessionOf, type JsonRoute, type JsonRouteCase } from '../json-routes.js'
import { mutatedBytes, mutatedJson, mutatedText } from '../mutate.js'
import type { FuzzSession, FuzzTarget } from '../runner.js'
import { serviceLog } from '../service-log.js'
import { mqttCases, type MqttCase } from './protocol.js'

type HttpServer = NonNullable<Relay['httpServer']>

/**
 * The demo stack's relay with an API token (so anonymous requests meet the real authentication check) and, when
 * asked, Graph change notifications on (so the webhook routes exist).
 */
class FuzzStack extends Stack {
  constructor(options: StackOptions, readonly notifications: boolean) {
    super(options)
  }

  override relayConfig(): RelayConfig {
    const config = super.relayConfig()
    return {
      ...config,
      http: { ...config.http, apiToken: 'fuzz-api-token-that-no-case-sends' },
      graph: this.notifications
        ? {
          ...config.graph,
          notifications: {
            publicUrl: 'https://relay.example/fuzz', reconcileIntervalMs: 300_000, subscriptionLifetimeMinutes: 55, renewBeforeMinutes: 15, readBudgetPer30s: 1200, verifyValidationTokens: true,
          },
        }
        : config.graph,
    }
  }
}

/** A relay as it runs (embedded broker, PGlite, Graph simulator), without a gateway. Logs: errors only. */
async function startRelay(options: { notifications?: boolean } = {}): Promise<{ stack: Stack; relay: Relay; http: HttpServer; log: ReturnType<typeof serviceLog>; close(): Promise<void> }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fuzz-relay-'))
  const log = serviceLog()
  const stack = new FuzzStack({ dataDir, logger: log.logger, serviceLogLevel: 'warn' }, options.notifications ?? false)
  await stack.startSimulators()
  const relay = await stack.startRelay()
  const http = relay.httpServer
  if (!http) throw new Error('the relay has no HTTP server')
  return {
    stack, relay, http, log,
    async close() {
      await stack.stop()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

async function healthz(http: HttpServer): Promise<boolean> {
  const response = await http.inject({ method: 'GET', url: '/healthz' })
  return response.statusCode === 200
}

// --- MQTT ingest ------------------------------------------------------------------------------------------

export const mqttIngestTarget: FuzzTarget<MqttCase> = {
  name: 'mqtt-ingest',
  what: 'MQTT envelopes on every contract topic, published as an authenticated gateway to the relay\'s embedded broker and ingest',
  arbitrary: () => mqttCases('gw-demo', { asGateway: true }),
  open: async (): Promise<FuzzSession<MqttCase>> => {
    const service = await startRelay()
    const { stack } = service
    let client: MqttClient | undefined
    let closed = true
    const connect = async (): Promise<MqttClient> => {
      if (client && !closed) return client
      await client?.endAsync(true).catch(() => undefined)
      const fresh = await mqtt.connectAsync(stack.brokerUrl, { clientId: stack.gatewayId, username: stack.gatewayId, password: stack.gatewayPassword, reconnectPeriod: 0 })
      closed = false
      fresh.on('close', () => { closed = true })
      fresh.on('error', () => undefined)
      client = fresh
      return fresh
    }
    const handled = (): number => {
      const c = stack.relayCounters
      return c.get('relay.messages') + c.get('relay.invalid_messages') + c.get('relay.refused_gateway_messages') + c.get('relay.handler_errors')
    }
    return {
      async run({ topic, payload }) {
        // mqtt.js (MQTT 3.1.1) never sends a PUBLISH with an empty topic nor answers its callback: nothing reaches
        // the broker, so there is nothing to test.
        if (topic.length === 0) return 'client-refused'
        const c = await connect()
        // The broker answers a QoS 1 publish with a PUBACK, or closes the connection when the ACL refuses it.
        return new Promise<string>((resolve) => {
          // mqtt.js keeps an unanswered QoS 1 message for a reconnect that never comes (reconnectPeriod 0).
          const poll = setInterval(() => {
            if (!c.connected) onClose()
          }, 100)
          const onClose = (): void => {
            clearInterval(poll)
            closed = true
            resolve('connection-closed')
          }
          c.once('close', onClose)
          try {
            c.publish(topic, payload, { qos: 1 }, (err) => {
              clearInterval(poll)
              c.off('close', onClose)
              resolve(err ? 'publish-error' : 'puback')
            })
          } catch {
            // The client itself refuses topics MQTT cannot carry (e.g. longer than 65,535 bytes). mqtt.js is left
            // with the refused message's state and never completes a later publish: start the next case afresh.
            clearInterval(poll)
            c.off('close', onClose)
            closed = true
            resolve('client-refused')
          }
        })
      },
      health: () => healthz(service.http),
      problems: () => service.log.takeErrors(),
      async settle() {
        // The relay hands messages on asynchronously: wait until its counters stand still.
        let last = -1
        for (let i = 0; i < 100 && handled() !== last; i++) {
          last = handled()
          await new Promise((resolve) => setTimeout(resolve, 25))
        }
      },
      codes: () => Object.keys(stack.relayCounters.snapshot()).filter((name) => name.startsWith('relay.invalid.') || name === 'relay.handler_errors' || name.startsWith('broker.')),
      async close() {
        await client?.endAsync(true).catch(() => undefined)
        await service.close()
      },
    }
  },
}

// --- Graph notifications ----------------------------------------------------------------------------------

const SUBSCRIPTION = '7f105c7d-2dc5-4530-97cd-4e7ae6534c07'
const NOTIFICATION_BATCH = {
  value: [{
    subscriptionId: SUBSCRIPTION,
    subscriptionExpirationDateTime: '2026-12-03T11:00:00.0000000+00:00',
    changeType: 'updated',
    resource: "communications/presences('66825e03-7ef5-42da-9069-724602c31f6b')",
    clientState: 'a-client-state',
    tenantId: 'bcb7d0fe-0000-4000-8000-000000000001',
    resourceData: { '@odata.type': '#Microsoft.Graph.presence', '@odata.id': "communications/presences('66825e03')", id: '66825e03-7ef5-42da-9069-724602c31f6b', availability: 'Busy', activity: 'InACall' },
    encryptedContent: {
      data: Buffer.from('{"availability":"Busy"}').toString('base64'), dataSignature: 'c2lnbmF0dXJl', dataKey: 'a2V5', encryptionCertificateId: 'cert-1', encryptionCertificateThumbprint: 'AB12CD',
    },
  }],
  validationTokens: ['eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.c2ln'],
}
const LIFECYCLE_BATCH = {
  value: [{ subscriptionId: SUBSCRIPTION, subscriptionExpirationDateTime: '2026-12-03T11:00:00Z', lifecycleEvent: 'reauthorizationRequired', clientState: 'a-client-state', tenantId: 'bcb7d0fe-0000-4000-8000-000000000001', resource: 'communications/presences' }],
}

interface WebhookCase { path: string; body: string; contentType: string; validationToken: string | undefined }

export const graphWebhookTarget: FuzzTarget<WebhookCase> = {
  name: 'graph-webhook',
  what: 'Graph notification and lifecycle batches POSTed to the relay\'s webhook routes (fastify inject, unauthenticated as Graph is)',
  arbitrary: () => fc.record({
    path: fc.constantFrom(NOTIFICATION_PATH, LIFECYCLE_PATH),
    body: fc.oneof(
      { weight: 8, arbitrary: mutatedJson(fc.constantFrom<unknown>(NOTIFICATION_BATCH, LIFECYCLE_BATCH)) },
      { weight: 1, arbitrary: fc.integer({ min: 1000, max: 1_500_000 }).map((n) => `{"value":[${'0,'.repeat(n)}0]}`) },
    ),
    contentType: fc.constantFrom('application/json', 'application/json', 'application/json', 'text/plain', 'application/json; charset=utf-16', 'application/x-www-form-urlencoded'),
    validationToken: fc.option(fc.oneof(fc.string({ maxLength: 40 }), fc.integer({ min: 1, max: 100_000 }).map((n) => 'v'.repeat(n))), { freq: 8, nil: undefined }),
  }),
  open: async (): Promise<FuzzSession<WebhookCase>> => {
    const service = await startRelay({ notifications: true })
    return {
      async run({ path, body, contentType, validationToken }) {
        const url = validationToken === undefined ? path : `${path}?validationToken=${encodeURIComponent(validationToken)}`
        const outcome = outcomeOf(await service.http.inject({ method: 'POST', url, payload: body, headers: { 'content-type': contentType } }))
        // The batch is processed after the 202: its processing time belongs to this case.
        await service.relay.observation.idle()
        return outcome
      },
      health: () => healthz(service.http),
      problems: () => service.log.takeErrors(),
      close: () => service.close(),
    }
  },
}

// --- Enrollment CSRs --------------------------------------------------------------------------------------

interface EnrollmentCase {
  via: 'service' | 'route'
  op: 'enroll' | 'renew'
  useValidCode: boolean
  code: string
  csrPem: string
  certificatePem: string
  remoteAddress: string
}

/** PEM → DER → damaged → PEM again: the structure-aware path into the ASN.1 parser. */
function derMutated(pem: string): fc.Arbitrary<string> {
  const label = /-----BEGIN ([^-]+)-----/.exec(pem)?.[1] ?? 'CERTIFICATE REQUEST'
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
  return mutatedBytes(fc.constant(der)).map((bytes) => `-----BEGIN ${label}-----\n${bytes.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`)
}

function pemCases(seeds: readonly string[]): fc.Arbitrary<string> {
  const seed = fc.constantFrom(...seeds)
  return fc.oneof(
    { weight: 4, arbitrary: seed.chain(derMutated) },
    { weight: 3, arbitrary: mutatedText(seed) },
    { weight: 1, arbitrary: seed },
    { weight: 1, arbitrary: fc.tuple(seed, fc.integer({ min: 2, max: 200 })).map(([pem, n]) => pem.repeat(n)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 300 }) },
  )
}

export const enrollmentCsrTarget: FuzzTarget<EnrollmentCase> = {
  name: 'enrollment-csr',
  what: 'Enrollment and renewal CSRs and certificates through the enrollment service and POST /enroll/v1/* (fastify inject)',
  // An issued certificate is an ECDSA signature plus a store transaction (PGlite runs in this process).
  caseLimitMs: 2000,
  arbitrary: () => fc.constant(null).chain(() => {
    const seeds = enrollmentSeeds
    if (!seeds) throw new Error('enrollment seeds are made in open()')
    return fc.record({
      via: fc.constantFrom('service' as const, 'route' as const),
      op: fc.constantFrom('enroll' as const, 'enroll' as const, 'renew' as const),
      useValidCode: fc.boolean(),
      code: fc.oneof(fc.constantFrom('AAAA-BBBB-CCCC-DDDD', '', '----', 'aaaabbbbccccdddd'), fc.string({ maxLength: 80 })),
      csrPem: pemCases(seeds.csrs),
      certificatePem: pemCases([seeds.certificate]),
      remoteAddress: fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255)).map(([a, b, c]) => `10.${a}.${b}.${c}`),
    })
  }),
  open: async (): Promise<FuzzSession<EnrollmentCase>> => {
    const service = await startRelay()
    const enrollment = service.relay.enrollment
    const created = await enrollment.createGateway('contoso', { id: 'gw-fuzz-enroll', name: 'Fuzz' })
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    const csr = await createBoxCsr(key, 'gw-fuzz-enroll')
    const issued = await enrollment.enroll({ code: created.code, csrPem: csr, remoteAddress: '192.0.2.10' })
    const rsaKey = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    const csrs = [csr, await createBoxCsr(key, `${'x'.repeat(200)},CN=relay:main`), await createBoxCsr(rsaKey, 'rsa').catch(() => csr)]
    enrollmentSeeds = { csrs, certificate: issued.certificatePem }
    let code = (await enrollment.newCode('gw-fuzz-enroll')).code
    return {
      async run(input) {
        const useCode = input.useValidCode ? code : input.code
        let outcome: string
        if (input.via === 'service') {
          try {
            if (input.op === 'enroll') await enrollment.enroll({ code: useCode, csrPem: input.csrPem, remoteAddress: input.remoteAddress })
            else await enrollment.renew({ certificatePem: input.certificatePem, csrPem: input.csrPem, remoteAddress: input.remoteAddress })
            outcome = 'issued'
          } catch (error) {
            const coded = error as { code?: unknown; name?: string }
            if (typeof coded.code !== 'string' || coded.name !== 'EnrollmentError') throw error
            outcome = coded.code
          }
        } else {
          const body = input.op === 'enroll' ? { code: useCode, csrPem: input.csrPem } : { certificatePem: input.certificatePem, csrPem: input.csrPem }
          outcome = outcomeOf(await service.http.inject({ method: 'POST', url: `/enroll/v1/${input.op}`, payload: body, remoteAddress: input.remoteAddress }))
        }
        if (input.useValidCode && input.op === 'enroll' && /issued|^200/.test(outcome)) code = (await enrollment.newCode('gw-fuzz-enroll')).code
        return outcome
      },
      health: () => healthz(service.http),
      problems: () => service.log.takeErrors(),
      close: () => service.close(),
    }
  },
}

let enrollmentSeeds: { csrs: string[]; certificate: string } | undefined

// --- The console's JSON bodies ----------------------------------------------------------------------------

const CONSOLE_ROUTES: readonly JsonRoute[] = [
  { method: 'POST', url: '/api/v1/console/first-run', seed: { username: 'admin', password: 'correct horse battery staple' } },
  { method: 'POST', url: '/api/v1/console/login', seed: { username: 'fuzz-operator', password: 'wrong password here' } },
  { method: 'POST', url: '/api/v1/console/logout', seed: {} },
  { method: 'POST', url: '/api/v1/console/accounts', seed: { username: 'tenant-admin', password: 'a long enough password', role: 'tenant-admin', tenantId: 'contoso' } },
  { method: 'POST', url: '/api/v1/tenants/{p}/imports', seed: { dryRun: true } },
  { method: 'PUT', url: '/api/v1/tenants/{p}/mappings', seed: { gatewayId: 'gw-demo', connectorId: 'osbiz-main', endpointId: '201', personId: 1 } },
  { method: 'PUT', url: '/api/v1/tenants/{p}/seats', seed: { limit: 10 } },
  { method: 'PUT', url: '/api/v1/people/1/sync', seed: { syncMode: 'telephony', settings: { busyPresence: 'Busy/InACall', meetingSetsDnd: true } } },
  { method: 'POST', url: '/api/v1/tenants/{p}/gateways', seed: { id: 'gw-fuzz-1', name: 'Fuzz' } },
  { method: 'POST', url: '/api/v1/gateways/gw-fuzz-1/enrollment-codes', seed: {} },
  { method: 'POST', url: '/api/v1/gateways/gw-fuzz-1/revoke', seed: { reason: 'fuzz' } },
  { method: 'POST', url: '/api/v1/tenants/{p}/service-accounts/sign-in', seed: {} },
]

export const consoleHttpTarget: FuzzTarget<JsonRouteCase> = {
  name: 'console-http',
  what: 'JSON bodies of every console POST/PUT route (fastify inject): signed in with CSRF, without CSRF, anonymous, broken cookie',
  // Sign-in and new accounts hash a password on purpose (scrypt, in the thread pool: the event loop stays free).
  caseLimitMs: 5000,
  arbitrary: () => jsonRouteCases(CONSOLE_ROUTES, ['contoso']),
  open: async (): Promise<FuzzSession<JsonRouteCase>> => {
    const service = await startRelay()
    const password = 'fuzzing operator password'
    await new ConsoleStore(service.relay.store.db).createAccount({ username: 'fuzz-operator', passwordHash: await hashPassword(password), role: 'operator', tenantId: null })
    return {
      run: jsonRouteRunner({
        routes: CONSOLE_ROUTES,
        inject: (options) => service.http.inject(options),
        signIn: async () => sessionOf(await service.http.inject({ method: 'POST', url: '/api/v1/console/login', payload: { username: 'fuzz-operator', password }, remoteAddress: '198.51.100.7' }), 'console'),
        brokenCookie: 'pbx_console=%',
      }),
      health: () => healthz(service.http),
      problems: () => service.log.takeErrors(),
      close: () => service.close(),
    }
  },
}
