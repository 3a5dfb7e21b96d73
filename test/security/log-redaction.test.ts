import Fastify from 'fastify'
import t from 'tap'
import { parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { parseGatewayConfig } from '../../gateway/src/config/load.js'
import { captureServiceLogger } from '../helpers/capture-logger.js'
import type { TapTest } from '../helpers/tap-types.js'

// Distinct values, so a leak names itself.
const S = {
  relayPassword: 'relay-broker-pw-7f3a',
  clientSecret: 'graph~client~secret~91c2',
  apiToken: 'api-token-5b8e1d0c9f7a6b5c4d3e2f1a0b9c8d7e',
  gatewayPassword: 'box-one-password-22ab',
  dbPassword: 'db-pw-e4d1',
  boxRelayPassword: 'box-relay-pw-0c1d',
  pbxPassword: 'csta-pbx-pw-8899',
  appPassword: 'innovaphone-app-pw-3344',
  proxyPassword: 'proxy-pw-5566',
  session: 'console-session-abcdef0123456789',
  csrf: 'csrf-token-fedcba9876543210',
  code: 'K7QX-M2PD-9WZR-4HTB',
  keyPem: '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n',
  refreshToken: 'refresh-0.AXwA-9d8c7b6a',
  accessToken: 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln',
  setupCode: 'setup-secret-77aa88bb',
}

function noSecrets(t: TapTest, text: string): void {
  t.ok(text.length > 0, 'something was logged')
  for (const [name, value] of Object.entries(S)) {
    const probe = name === 'keyPem' ? 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC' : value
    t.notOk(text.includes(probe), `${name} does not appear in the log`)
  }
}

t.test('the relay config logged at start keeps its secrets out of the log', async (t) => {
  const config = parseRelayConfig({
    broker: { relayPassword: S.relayPassword },
    database: { url: { env: 'DB_URL' } },
    tenants: [{ id: 'contoso', graph: { tenantId: 't', clientId: 'c', clientSecret: S.clientSecret }, gateways: [{ id: 'box-1', password: S.gatewayPassword }] }],
    http: { apiToken: { env: 'API_TOKEN' } },
  }, 'relay.json', { DB_URL: `postgres://relay:${S.dbPassword}@db.internal:5432/relay`, API_TOKEN: S.apiToken })
  const { logger, lines, text } = captureServiceLogger('relay')
  logger.info({ config }, 'relay starting')
  logger.child({ component: 'graph', tenant: config.tenants[0] }).info('tenant loaded')
  logger.debug({ broker: config.broker, http: config.http }, 'listening')
  noSecrets(t, text())
  t.match(lines()[0], { config: { broker: { relayPassword: '[redacted]', relayUsername: 'relay' }, database: { url: 'postgres://relay:[redacted]@db.internal:5432/relay' } } }, 'the rest stays readable')
  t.match(lines()[1], { tenant: { id: 'contoso', graph: { clientId: 'c', clientSecret: '[redacted]' }, gateways: [{ id: 'box-1', password: '[redacted]' }] } })
})

t.test('the box\'s config and connector configs keep their PBX credentials out of the log', async (t) => {
  const config = parseGatewayConfig({
    gatewayId: 'gw-1',
    relay: { url: 'mqtts://relay.example.net:8883', username: 'gw-1', password: S.boxRelayPassword, proxyUrl: `http://site:${S.proxyPassword}@proxy.lan:3128` },
    connectors: [
      { id: 'osbiz-main', type: 'osbiz', host: '10.0.0.5', port: 8800, applicationId: 'presence-gateway', username: 'cstauser', password: S.pbxPassword, users: [] },
      { id: 'ipbx', type: 'innovaphone', host: 'pbx.lan', appName: 'presencegateway', appPassword: S.appPassword },
    ],
  }, adapterRegistry)
  const { logger, lines, text } = captureServiceLogger('gateway')
  logger.info({ config }, 'gateway starting')
  for (const connector of config.connectors) logger.child({ component: 'connector', connector }).info('connector starting')
  logger.warn({ relay: config.relay }, 'relay link down')
  noSecrets(t, text())
  t.match(lines()[0], { config: { relay: { username: 'gw-1', password: '[redacted]', proxyUrl: 'http://site:[redacted]@proxy.lan:3128' } } })
  t.match(lines()[2], { connector: { id: 'ipbx', appName: 'presencegateway', appPassword: '[redacted]' } })
})

t.test('requests: authorization and cookie headers, CSRF tokens and bodies with secrets', async (t) => {
  const { logger, text } = captureServiceLogger('relay')
  const app = Fastify({ loggerInstance: logger })
  app.post('/enroll/v1/enroll', async (request) => {
    // What a handler (or a future debug line) might log: the request, its headers, its body.
    request.log.info({ req: request, headers: request.headers, body: request.body }, 'enrollment request')
    request.log.debug({ request: { headers: request.headers } }, 'nested headers')
    return { ok: true }
  })
  const res = await app.inject({
    method: 'POST',
    url: '/enroll/v1/enroll',
    headers: { authorization: `Bearer ${S.apiToken}`, cookie: `pbx_console=${S.session}`, 'x-csrf-token': S.csrf, 'proxy-authorization': `Basic ${Buffer.from(`u:${S.proxyPassword}`).toString('base64')}` },
    payload: { code: S.code, csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n' },
  })
  t.equal(res.statusCode, 200)
  await app.close()
  noSecrets(t, text())
  t.notOk(text().includes(Buffer.from(`u:${S.proxyPassword}`).toString('base64')), 'nor the basic credentials')
  t.match(text(), /"method":"POST"/, 'the request itself is still logged')
})

t.test('tokens, keys and setup codes at any depth, error codes stay readable', async (t) => {
  const { logger, lines, text } = captureServiceLogger('relay')
  logger.info({ tokens: { access_token: S.accessToken, refresh_token: S.refreshToken, expires_in: 3599 } }, 'token response')
  logger.info({ account: { cache: { accessToken: S.accessToken, refreshToken: S.refreshToken } } }, 'msal cache')
  logger.info({ identity: { gatewayId: 'gw-1', keyPem: S.keyPem, certificatePem: 'cert', csr: { privateKeyPem: S.keyPem } } }, 'identity written')
  logger.info({ enrollment: { code: S.code, gatewayId: 'gw-1' } }, 'code made')
  logger.info({ setup: { setupCode: S.setupCode } }, 'setup code printed elsewhere')
  logger.info({ a: { b: { c: { d: { e: { password: S.pbxPassword } } } } } }, 'deep')
  logger.info({ list: [{ secret: S.clientSecret }, [{ apiToken: S.apiToken }]] }, 'arrays')
  logger.warn({ code: 'ECONNREFUSED', reason: 'closed' }, 'PBX link lost')
  noSecrets(t, text())
  t.match(lines().at(-1), { code: 'ECONNREFUSED', reason: 'closed' })
  t.match(lines()[0], { tokens: { expires_in: 3599 } })
})

t.test('a secret in an error message or an error\'s fields is not logged', async (t) => {
  const { logger, lines, text } = captureServiceLogger('relay')
  const dbUrl = `postgres://relay:${S.dbPassword}@db.internal/relay`
  const err = Object.assign(new Error(`cannot connect to ${dbUrl}`), { code: 'DB_CONNECT', config: { password: S.pbxPassword }, headers: { authorization: `Bearer ${S.apiToken}` } })
  logger.error({ err }, 'store unreachable')
  logger.error(err, 'store unreachable')
  logger.error({ cause: new Error(`token request https://login.example/token?client_secret=${S.clientSecret}&refresh_token=${S.refreshToken} failed`, { cause: err }), url: `https://relay.example/cb?code=${S.code}&state=x` }, 'nested')
  logger.warn(`proxy failed: http://u:${S.proxyPassword}@proxy.lan:3128 refused`)
  logger.warn({ err: `Authorization: Bearer ${S.apiToken}` }, 'as text')
  const child = logger.child({ connector: { id: 'x', password: S.pbxPassword } })
  child.info('bound')
  noSecrets(t, text())
  t.match(lines()[0], { err: { type: 'Error', message: 'cannot connect to postgres://relay:[redacted]@db.internal/relay', code: 'DB_CONNECT', config: { password: '[redacted]' } } })
  t.match(lines()[1], { err: { type: 'Error', code: 'DB_CONNECT' } })
  t.match(lines()[3], { msg: 'proxy failed: http://u:[redacted]@proxy.lan:3128 refused' })
})
