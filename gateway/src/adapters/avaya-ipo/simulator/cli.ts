#!/usr/bin/env node
/* Interactive IP Office MTCTI-3 simulator: `npm run sim:avaya-ipo -- --help`. Console output is the UI here. */
import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { CALL_STATE_NAMES, CallState } from '../mtcti3/model.js'
import { AvayaIpoSimulator, type AvayaSimUser } from './avaya-ipo-simulator.js'

const HELP = `avaya-ipo simulator: IP Office MTCTI-3 (WebSocket over TLS at /tpkt/openapi, subprotocol openapi, protobuf)

Usage: npm run sim:avaya-ipo -- --cert CERT.pem --key KEY.pem [options]

  Make a self-signed certificate, as IP Office has:
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \\
      -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout key.pem -out cert.pem
  The simulator prints the certificate's SHA-256 for the connector's tls.pinnedSha256.

Options:
  --host ADDR             listen address (default 127.0.0.1)
  --port N                HTTPS port (default 8443, 0 = any free port)
  --cert FILE, --key FILE PEM certificate and key (required)
  --username NAME         service user (default gateway)
  --password SECRET       its password (default secret); others get HTTP 401
  --users FILE.json       [{"extension":"201","name":"alice","fullName":"Alice","email":"alice@contoso.example"}, ...]
  --max-links N           concurrent connections (default 3)
  --sac-is-not-dnd        accept Send All Calls updates without changing DND
  -h, --help              this text

Commands on stdin:
  call EXT                an external call rings at EXT; prints the call id
  dial EXT TO             EXT calls TO
  answer CALL | hangup CALL | hold CALL EXT | retrieve CALL EXT
  state CALL EXT STATE    set a leg to any CallInfo state (name or number)
  dnd EXT on|off          the person switches DND (Send All Calls)
  add EXT NAME [EMAIL] | remove EXT
  terminate [lines|user]  end subscriptions with SubscribeTerminated
  drop                    cut every client connection
  status | help | quit
`

const DEMO_USERS: AvayaSimUser[] = [
  { extension: '201', name: 'alice', fullName: 'Alice Adams', email: 'alice@contoso.example' },
  { extension: '202', name: 'bob', fullName: 'Bob Baker', email: 'bob@contoso.example' },
  { extension: '203', name: 'carol', fullName: 'Carol Clark', email: 'carol@contoso.example' },
]

function isUser(value: unknown): value is AvayaSimUser {
  if (typeof value !== 'object' || value === null) return false
  const record = value as Record<string, unknown>
  return typeof record.extension === 'string' && /^[0-9*#]{1,24}$/.test(record.extension) && typeof record.name === 'string'
    && (record.email === undefined || typeof record.email === 'string') && (record.fullName === undefined || typeof record.fullName === 'string')
}

async function loadUsers(file: string | undefined): Promise<AvayaSimUser[]> {
  if (file === undefined) return DEMO_USERS
  const json: unknown = JSON.parse(await readFile(file, 'utf8'))
  if (!Array.isArray(json) || json.length === 0 || !json.every(isUser)) {
    throw new Error(`${file}: expected a non-empty list of {"extension":"201","name":"...","fullName"?:"...","email"?:"..."}`)
  }
  return json
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' }, port: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' },
      username: { type: 'string' }, password: { type: 'string' }, users: { type: 'string' }, 'max-links': { type: 'string' },
      'sac-is-not-dnd': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) {
    process.stdout.write(HELP)
    return
  }
  if (values.cert === undefined || values.key === undefined) throw new Error('--cert and --key are required (see --help for an openssl line)')
  const certPem = await readFile(values.cert, 'utf8')
  const keyPem = await readFile(values.key, 'utf8')
  const users = await loadUsers(values.users)
  const port = Number(values.port ?? 8443)
  const maxLinks = Number(values['max-links'] ?? 3)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port needs 0..65535, got ${values.port}`)
  const simulator = new AvayaIpoSimulator({
    host: values.host ?? '127.0.0.1', port, tls: { certPem, keyPem }, users,
    credentials: { username: values.username ?? 'gateway', password: values.password ?? 'secret' },
    maxLinks, sacTogglesDnd: values['sac-is-not-dnd'] !== true,
  })
  const address = await simulator.start()
  const fingerprint = new X509Certificate(certPem).fingerprint256.replaceAll(':', '').toLowerCase()
  console.log(`IP Office MTCTI-3 simulator on wss://${address.host}:${address.port}/tpkt/openapi with ${users.map((u) => `${u.extension} ${u.name}`).join(', ')}`)
  console.log(`certificate SHA-256 (tls.pinnedSha256): ${fingerprint}`)
  console.log('type "help" for commands')
  const input = createInterface({ input: process.stdin, terminal: false })
  const shutdown = async (): Promise<void> => {
    input.close()
    await simulator.stop()
    process.exit(0)
  }
  process.once('SIGINT', () => void shutdown())
  process.once('SIGTERM', () => void shutdown())
  input.on('close', () => void shutdown())
  input.on('line', (line) => {
    try {
      const output = runCommand(simulator, users, line.trim().split(/\s+/).filter((word) => word !== ''))
      if (output === 'quit') return void shutdown()
      if (output !== '') console.log(output)
    } catch (error) {
      console.log(`error: ${error instanceof Error ? error.message : String(error)}`)
    }
  })
}

function runCommand(simulator: AvayaIpoSimulator, users: AvayaSimUser[], words: string[]): string {
  const [command, a, b, c] = words
  const need = (value: string | undefined, what: string): string => {
    if (value === undefined) throw new Error(`missing ${what}; type "help"`)
    return value
  }
  switch (command) {
    case undefined: return ''
    case 'call': return `call ${simulator.incomingCall(need(a, 'extension'))}`
    case 'dial': return `call ${simulator.outgoingCall(need(a, 'extension'), need(b, 'destination'))}`
    case 'answer': simulator.answer(need(a, 'call id')); return 'answered'
    case 'hangup': simulator.hangup(need(a, 'call id')); return 'cleared'
    case 'hold': simulator.hold(need(a, 'call id'), need(b, 'extension')); return 'held'
    case 'retrieve': simulator.retrieve(need(a, 'call id'), need(b, 'extension')); return 'retrieved'
    case 'state': {
      const name = need(c, 'state').toUpperCase()
      const state = /^-?\d+$/.test(name) ? Number(name) : (CallState as Record<string, number>)[name]
      if (state === undefined) throw new Error(`unknown state ${name}; one of ${[...CALL_STATE_NAMES.values()].join(' ')}`)
      simulator.setCallState(need(a, 'call id'), need(b, 'extension'), state)
      return `call ${a} ${b} ${CALL_STATE_NAMES.get(state) ?? state}`
    }
    case 'dnd': {
      const state = need(b, 'on|off')
      if (state !== 'on' && state !== 'off') throw new Error('dnd needs on or off')
      simulator.setDndAtPhone(need(a, 'extension'), state === 'on')
      return `dnd ${a} ${state}`
    }
    case 'add': {
      const user: AvayaSimUser = { extension: need(a, 'extension'), name: need(b, 'name'), ...(c === undefined ? {} : { email: c }) }
      simulator.addUser(user)
      users.push(user)
      return `added ${a}`
    }
    case 'remove': {
      simulator.removeUser(need(a, 'extension'))
      users.splice(users.findIndex((user) => user.extension === a), 1)
      return `removed ${a}`
    }
    case 'terminate': return `terminated ${simulator.terminateSubscriptions(a === 'lines' || a === 'user' ? a : 'all')} subscription(s)`
    case 'drop': return `dropped ${simulator.dropAllConnections()} connection(s)`
    case 'status': {
      const calls = simulator.calls().map((call) => `  call ${call.callId}: ${call.legs.map((leg) => `${leg.extension}=${CALL_STATE_NAMES.get(leg.state) ?? leg.state}`).join(' ')}`)
      return [
        `links ${simulator.connectionCount}, subscriptions ${simulator.subscriptionCount()}, stats ${JSON.stringify(simulator.stats)}`,
        `  dnd ${users.map((user) => `${user.extension}=${simulator.getDnd(user.extension) ? 'on' : 'off'}`).join(' ')}`,
        ...(calls.length === 0 ? ['  no calls'] : calls),
      ].join('\n')
    }
    case 'help': return HELP.slice(HELP.indexOf('Commands on stdin:'))
    case 'quit':
    case 'exit': return 'quit'
    default: throw new Error(`unknown command ${JSON.stringify(command)}; type "help"`)
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error))
  process.exit(2)
})
