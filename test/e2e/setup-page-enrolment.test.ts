import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { DEMO_PEOPLE, Stack } from '../../scripts/stack.js'
import { call, startBox } from '../box-ui/fixtures/box-harness.js'
import { eventually } from '../helpers/eventually.js'

// The installer's path, end to end: a new box (no config but its data folder) is claimed with the setup code,
// enrolled in its setup page against a real relay (mutual TLS), given an OSBiz connector there, and a call on the
// PBX then shows in Teams. The box restarts its gateway after the enrollment; everything it sends afterwards
// (through the outbox) must still reach the relay, and the connector saved meanwhile must run once.

t.test('a box enrolled in its setup page: the PBX is monitored once and a call reaches Teams', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'setup-page-e2e-'))
  const stack = new Stack({ dataDir, logger: pino({ level: 'silent' }), secure: {} })
  await stack.startSimulators()
  const relay = await stack.startRelay()
  t.teardown(async () => { await stack.stop(); await rm(dataDir, { recursive: true, force: true }) })
  const box = await startBox({ build: false })
  t.teardown(() => box.close())

  const setup = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: 'installer password 1', setupCode: box.setupCode() } })
  t.equal(setup.status, 200, 'the box is claimed with its setup code')
  const session = { cookie: (setup.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? '', csrf: (JSON.parse(setup.text) as { csrfToken: string }).csrfToken }
  const authed = (method: 'POST' | 'PUT' | 'GET', path: string, body?: unknown) =>
    call(`${box.origin}${path}`, { method, headers: { cookie: session.cookie, ...(method === 'GET' ? {} : { 'x-csrf-token': session.csrf }) }, ...(body === undefined ? {} : { body }) })

  const { code } = await relay.enrollment.createGateway('contoso', { id: 'gw-setup-page', name: 'Set up in its page' })
  const enrolled = await authed('POST', '/api/enrollment', { code, relayUrl: stack.enrollUrl, caFingerprint: relay.pki.caFingerprint256 })
  t.equal(enrolled.status, 200, `enrolled in the setup page: ${enrolled.text.slice(0, 200)}`)
  // At once, as a person on the page would: the gateway is still restarting with its new identity.
  const saved = await authed('PUT', '/api/connectors/osbiz-main', {
    type: 'osbiz',
    config: { host: '127.0.0.1', port: stack.pbx.port, applicationId: 'presence-gateway', username: 'cstauser', password: 'csta-secret', users: DEMO_PEOPLE.map((p) => ({ extension: p.extension, name: p.name, email: p.email })) },
  })
  t.equal(saved.status, 200, 'the connector is saved in the setup page')

  await eventually(() => stack.pbx.monitorCount >= DEMO_PEOPLE.length || undefined, 'every extension monitored', 20_000)
  await eventually(async () => {
    const report = await relay.directory.mappingReport('contoso')
    return report.endpoints.filter((e) => e.gatewayId === 'gw-setup-page' && e.personId !== null).length >= DEMO_PEOPLE.length || undefined
  }, 'the relay maps the box\'s extensions to people', 20_000)
  await new Promise((resolve) => setTimeout(resolve, 300)) // a second PBX session would show by now
  t.equal(stack.pbx.connectionCount, 1, 'one CSTA session')
  t.equal(stack.pbx.monitorCount, DEMO_PEOPLE.length, 'each extension monitored once')

  const alice = DEMO_PEOPLE[0]!
  t.notOk(stack.graph.getSession(alice.email, stack.graphClient.clientId), 'Teams shows no call before the call')
  const callId = stack.pbx.incomingCall(alice.extension)
  stack.pbx.answer(callId)
  const teams = await eventually(() => stack.graph.getSession(alice.email, stack.graphClient.clientId), 'the call to reach Teams', 20_000)
  t.match(teams, { availability: 'DoNotDisturb' }, `Teams shows ${alice.email} in Do not disturb during the PBX call`)
  stack.pbx.hangup(callId)
  await eventually(() => (stack.graph.getSession(alice.email, stack.graphClient.clientId) ? undefined : true), 'Teams to be released after the call', 20_000)
  t.pass('released in Teams after the call')
})
