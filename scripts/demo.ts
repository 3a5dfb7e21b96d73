/**
 * `npm start`: the whole product on this machine with simulators where no real PBX or tenant is configured.
 * Starts the Graph simulator (a Microsoft 365 tenant), the cloud relay (embedded MQTT broker, PGlite), an
 * OpenScape Business CSTA simulator and a gateway, shows both directions of the sync, then takes commands.
 */
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { createLogger } from '#kernel/logging.js'
import { adapterRegistry } from '../gateway/src/adapters/registry.js'
import { systemClock } from '#kernel/clock.js'
import { ensureBoxCertificate } from '../gateway/src/web/box-certificate.js'
import { BoxWebServer } from '../gateway/src/web/box-web-server.js'
import { LogRing } from '../gateway/src/web/log-ring.js'
import { buildWeb } from './build-web.js'
import { Stack } from './stack.js'

const HELP = `npm start [-- options]

Runs the relay, a gateway and simulators for OpenScape Business and Microsoft Graph, shows a PBX call turning
into Teams "Do not disturb" and a Teams meeting turning into PBX DND, then takes commands.

Options:
  --data DIR        state folder (default .data/demo, wiped at start)
  --no-scenario     skip the scripted walk-through
  --verbose         show the services' own logs (info level)
  --help
`

const { values } = parseArgs({ options: { data: { type: 'string' }, 'no-scenario': { type: 'boolean' }, verbose: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } })
if (values.help) {
  process.stdout.write(HELP)
  process.exit(0)
}

const out = (line = '') => process.stdout.write(`${line}\n`)
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s)
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s)
const started = Date.now()
const since = () => dim(`[+${((Date.now() - started) / 1000).toFixed(1)}s]`)

const dataDir = values.data ?? '.data/demo'
await rm(dataDir, { recursive: true, force: true })
const logger = createLogger({ name: 'demo', level: values.verbose ? 'info' : 'warn', pretty: true })
// The production tunnel: the gateway enrolls with a one-time code and connects with its own certificate (mTLS).
const stack = new Stack({ dataDir, logger, sync: { pollIntervalMs: 1000 }, secure: {} })

out(bold('PBX presence gateway: demo mode'))
out('Everything runs here; simulators stand in for the PBX and Microsoft 365.')
out()
await stack.startSimulators()
out(`${since()} Microsoft Graph simulator  ${stack.graph.url}  (tenant "Contoso": ${stack.people.map((p) => p.email).join(', ')})`)
out(`${since()} OpenScape Business (CSTA) simulator  127.0.0.1:${stack.pbx.port}  (extensions ${stack.people.map((p) => `${p.extension} ${p.name.split(' ')[0]}`).join(', ')})`)
// The browser apps the relay (console) and the gateway (setup UI) serve: built once, in about a second.
if (!existsSync('dist/web/console/app.js') || !existsSync('dist/web/box/app.js')) await buildWeb('dist/web')
await stack.startRelay()
out(`${since()} Cloud relay  enrollment ${stack.enrollUrl} (its own CA, pin ${stack.relay!.pki.caFingerprint256.slice(0, 16)}…), MQTT broker mqtts:// with client certificates, store PGlite in ${dataDir}/relay-db`)
stack.relay!.engine.onDecision((entry) => out(`${since()}   ${dim('relay:')} ${entry.message}`))
const enrolled = await stack.enrollGateway()
out(`${since()} Gateway "${stack.gatewayId}"  created on the relay; the box enrolled with the one-time code ${enrolled?.code ?? '(already enrolled)'} and got its certificate`)
await stack.startGateway()
out(`${since()} Gateway "${stack.gatewayId}"  connected out to the relay over mutual TLS, watching the PBX`)
out(`${since()} Cloud console  ${stack.enrollUrl}/console/  (the first visit creates the admin account; the relay's certificate is from its own CA, so the browser asks once)`)
const setupSecret = stack.relay!.consoleSetupSecret
if (setupSecret) out(`${since()}   setup secret for the first visit: ${bold(setupSecret)}  (a relay prints it in its log at start and writes it to console-setup-secret next to its seal key)`)
// The box's own setup page, as an installer on site opens it (HTTPS with the box's first-boot certificate).
const boxCertificate = await ensureBoxCertificate(stack.gatewayConfig().dataDir)
const boxWeb = new BoxWebServer({
  gateway: stack.gateway!, config: { ...stack.gatewayConfig(), web: { ...stack.gatewayConfig().web, host: '127.0.0.1', port: 0 } },
  registry: adapterRegistry, logger, clock: systemClock, logRing: new LogRing(), certificate: boxCertificate,
  fileConnectorIds: new Set(stack.gatewayConfig().connectors.map((c) => c.id)),
})
const { url: boxUrl, setupCode: boxSetupCode } = await boxWeb.start()
out(`${since()} Box setup page ${boxUrl}  setup code ${bold(boxSetupCode ?? '(already claimed)')}  (the first visit asks for it and sets the box's admin password; on a real box it is printed on its console; certificate SHA-256 ${boxCertificate.fingerprint256.slice(0, 23)}…)`)

const waitUntil = async (check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`demo: timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const graphId = (email: string) => stack.graph.findUser(email)!.id
const teams = (email: string) => stack.graph.getPresence(graphId(email))
await waitUntil(() => stack.gateway?.links()[0]?.state === 'connected', 'the gateway to reach the PBX')
await waitUntil(() => stack.relay!.engine.graphUserIds('contoso').length === stack.people.length, 'people to be mapped to Microsoft 365 users')
out(`${since()} ${stack.people.length} extensions mapped to Microsoft 365 users by e-mail`)
for (const person of stack.people) stack.graph.teams(graphId(person.email)).setAvailable()
out(`${since()} Everyone is signed in to Teams and Available`)

if (!values['no-scenario']) {
  const alice = stack.person('alice')
  const bob = stack.person('bob')
  out()
  out(bold('1) PBX call -> Teams shows "Do not disturb"'))
  out(`${since()} Alice's desk phone (${alice.extension}) rings and she answers.`)
  const callId = stack.pbx.incomingCall(alice.extension)
  stack.pbx.answer(callId)
  let t0 = Date.now()
  await waitUntil(() => teams(alice.email).availability === 'DoNotDisturb', 'Alice to show DND in Teams')
  out(`${since()} Teams now shows Alice as ${bold(`${teams(alice.email).availability}/${teams(alice.email).activity}`)} (${Date.now() - t0} ms after she answered).`)
  await new Promise((resolve) => setTimeout(resolve, 1500))
  out(`${since()} Alice hangs up.`)
  stack.pbx.hangup(callId)
  t0 = Date.now()
  await waitUntil(() => teams(alice.email).availability !== 'DoNotDisturb', 'Alice to leave DND in Teams')
  out(`${since()} Teams shows Alice as ${bold(`${teams(alice.email).availability}/${teams(alice.email).activity}`)} again (${Date.now() - t0} ms).`)

  out()
  out(bold('2) Teams meeting -> DND on the PBX'))
  out(`${since()} Bob joins a Teams meeting (conference call).`)
  stack.graph.teams(graphId(bob.email)).startConference()
  t0 = Date.now()
  await waitUntil(() => stack.pbx.getDnd(bob.extension), "DND on Bob's extension")
  out(`${since()} PBX extension ${bob.extension} now has ${bold('DND on')}, owned by the gateway (${Date.now() - t0} ms; Teams is polled every second in the demo).`)
  await new Promise((resolve) => setTimeout(resolve, 1500))
  out(`${since()} Bob leaves the meeting.`)
  stack.graph.teams(graphId(bob.email)).endActivity()
  t0 = Date.now()
  await waitUntil(() => !stack.pbx.getDnd(bob.extension), "Bob's DND to be released")
  out(`${since()} DND on ${bob.extension} is ${bold('off')} again (${Date.now() - t0} ms).`)
}

out()
out(bold('Your turn.') + ' Commands:')
const COMMANDS = `  call <ext>            ring an extension        answer <ext>      answer its ringing call
  hangup <ext>          end its calls             dnd <ext> on|off  press DND on the phone
  meeting <name>        join a Teams meeting      present <name>    share the screen in Teams
  teamscall <name>      Teams call                teamsdnd <name>   set DND in Teams by hand
  end <name>            end Teams activity        status            show both sides
  help                  this list                 quit              stop everything`
out(COMMANDS)
out(dim('names: alice, bob, carol; extensions: ' + stack.people.map((p) => p.extension).join(', ')))

const status = () => {
  for (const person of stack.people) {
    const endpoint = stack.gateway?.endpoints().find((e) => e.endpointId === person.extension)
    const presence = teams(person.email)
    out(`  ${person.name.padEnd(12)} PBX ${person.extension}: ${(endpoint?.state ?? '?').padEnd(7)} DND ${endpoint?.dnd ? `on (${endpoint.dndOwner})` : 'off'}`.padEnd(52) + `Teams: ${presence.availability}/${presence.activity}`)
  }
}

const callsOf = (extension: string) => stack.pbx.calls().filter((c) => c.legs.some((leg) => leg.device === extension))

const shutdown = async () => {
  out('stopping...')
  await boxWeb.stop()
  await stack.stop()
  process.exit(0)
}
process.once('SIGINT', () => void shutdown())
process.once('SIGTERM', () => void shutdown())

if (!process.stdin.isTTY) {
  out(dim('(stdin is not a terminal: commands are read from it until it ends; the demo keeps running until Ctrl-C)'))
}
const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: '> ' })
rl.prompt()
rl.on('line', (line) => {
  const [command, arg, extra] = line.trim().split(/\s+/)
  try {
    switch (command) {
      case undefined:
      case '':
        break
      case 'call':
        out(`  call ${stack.pbx.incomingCall(arg ?? '201')} ringing on ${arg ?? '201'}`)
        break
      case 'answer':
        for (const c of callsOf(arg ?? '')) stack.pbx.answer(c.callId)
        break
      case 'hangup':
        for (const c of callsOf(arg ?? '')) stack.pbx.hangup(c.callId)
        break
      case 'dnd':
        stack.pbx.setDndAtPhone(arg ?? '', extra === 'on')
        break
      case 'meeting':
        stack.graph.teams(graphId(stack.person(arg ?? '').email)).startConference()
        break
      case 'present':
        stack.graph.teams(graphId(stack.person(arg ?? '').email)).startPresenting()
        break
      case 'teamscall':
        stack.graph.teams(graphId(stack.person(arg ?? '').email)).startCall()
        break
      case 'teamsdnd':
        stack.graph.teams(graphId(stack.person(arg ?? '').email)).setDnd()
        break
      case 'end': {
        const client = stack.graph.teams(graphId(stack.person(arg ?? '').email))
        client.endActivity()
        client.resetStatus()
        break
      }
      case 'status':
        status()
        break
      case 'help':
        out(COMMANDS)
        break
      case 'quit':
      case 'exit':
        void shutdown()
        return
      default:
        out(`  unknown command "${command}"; type help`)
    }
  } catch (err) {
    out(`  ${(err as Error).message}`)
  }
  rl.prompt()
})
rl.on('close', () => {
  if (process.stdin.isTTY) void shutdown()
})
