#!/usr/bin/env node
/* Interactive innovaphone App Platform simulator: `npm run sim:innovaphone -- --help`. Console output is the UI here. */
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { InnovaphoneSimulator, type SimApi, type SimUser } from './innovaphone-simulator.js'

const HELP = `innovaphone simulator: a PBX App Platform WebSocket (/PBX0/APPS/websocket) with RCC, PbxApi and PbxTableUsers

Usage: npm run sim:innovaphone -- [options]

Options:
  --host ADDR            listen address (default 127.0.0.1)
  --port N               port (default 8080, 0 = any free port)
  --cert FILE --key FILE serve wss:// with this certificate (default ws://)
  --app NAME             App object name (default gateway)
  --password SECRET      App object password (default pwd)
  --apis LIST            APIs enabled on the App object (default RCC,PbxApi,PbxTableUsers)
  --users FILE.json      [{"cn":"Alice Adams","e164":"201","h323":"alice","emails":["alice@contoso.example"]}, ...]
                         (default: 201 Alice, 202 Bob, 203 Carol)
  -h, --help             this text

Commands on stdin:
  call EXT [FROM]        a call from outside (or from extension FROM) rings at EXT; prints the call id
  dial EXT TO            EXT calls TO
  answer CALL            the ringing side answers
  hold CALL EXT | retrieve CALL EXT
  hangup CALL [EXT]      EXT (default: the first party) hangs up; every leg gets its del
  dnd EXT on|off         the person sets or clears DND (presence tel:, activity dnd)
  presence EXT ACTIVITY  any other activity (away, busy, ...)
  add EXT "LONG NAME" [EMAIL] | remove EXT | email EXT EMAIL
  drop                   cut every client connection
  freeze on|off          keep connections open but answer nothing (a hung PBX)
  status                 connections, monitors, calls and DND
  help | quit
`

const DEMO_USERS: SimUser[] = [
  { cn: 'Alice Adams', e164: '201', h323: 'alice', emails: ['alice@contoso.example'] },
  { cn: 'Bob Baker', e164: '202', h323: 'bob', emails: ['bob@contoso.example'] },
  { cn: 'Carol Clark', e164: '203', h323: 'carol', emails: ['carol@contoso.example'] },
]

const UsersFileSchema = Type.Array(Type.Object({
  cn: Type.String({ minLength: 1 }),
  e164: Type.String(),
  h323: Type.Optional(Type.String()),
  dn: Type.Optional(Type.String()),
  guid: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{32}$' })),
  emails: Type.Optional(Type.Array(Type.String())),
  h323Email: Type.Optional(Type.Boolean()),
  pbx: Type.Optional(Type.String()),
}, { additionalProperties: false }), { minItems: 1 })

async function loadUsers(file: string | undefined): Promise<SimUser[]> {
  if (file === undefined) return DEMO_USERS
  const json: unknown = JSON.parse(await readFile(file, 'utf8'))
  if (!Value.Check(UsersFileSchema, json)) {
    const problems = [...Value.Errors(UsersFileSchema, json)].map((error) => `${error.path || '/'}: ${error.message}`)
    throw new Error(`${file} is not a users list:\n  ${problems.join('\n  ')}`)
  }
  return json
}

function parseApis(list: string | undefined): SimApi[] | undefined {
  if (list === undefined) return undefined
  const apis = list.split(',').map((api) => api.trim()).filter((api) => api !== '')
  for (const api of apis) if (api !== 'RCC' && api !== 'PbxApi' && api !== 'PbxTableUsers') throw new Error(`--apis: unknown API ${JSON.stringify(api)} (RCC, PbxApi, PbxTableUsers)`)
  return apis as SimApi[]
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      app: { type: 'string' },
      password: { type: 'string' },
      apis: { type: 'string' },
      users: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) {
    process.stdout.write(HELP)
    return
  }
  if ((values.cert === undefined) !== (values.key === undefined)) throw new Error('--cert and --key go together')
  const port = Number(values.port ?? '8080')
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port needs a port number, got ${JSON.stringify(values.port)}`)
  const users = await loadUsers(values.users)
  const apis = parseApis(values.apis)
  const simulator = new InnovaphoneSimulator({
    host: values.host ?? '127.0.0.1',
    port,
    appName: values.app ?? 'gateway',
    appPassword: values.password ?? 'pwd',
    users,
    ...(apis === undefined ? {} : { apis }),
    ...(values.cert === undefined || values.key === undefined ? {} : { tls: { cert: await readFile(values.cert, 'utf8'), key: await readFile(values.key, 'utf8') } }),
  })
  const { url } = await simulator.start()
  console.log(`innovaphone simulator at ${url} (App object "${values.app ?? 'gateway'}") with ${users.map((user) => `${user.e164} ${user.cn}`).join(', ')}`)
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
      const words = line.match(/"[^"]*"|\S+/g)?.map((word) => word.replace(/^"|"$/g, '')) ?? []
      const output = runCommand(simulator, words)
      if (output === 'quit') {
        void shutdown()
        return
      }
      if (output !== '') console.log(output)
    } catch (error) {
      console.log(`error: ${error instanceof Error ? error.message : String(error)}`)
    }
  })
}

function runCommand(simulator: InnovaphoneSimulator, words: string[]): string {
  const [command, a, b, c] = words
  const need = (value: string | undefined, what: string): string => {
    if (value === undefined) throw new Error(`missing ${what}; type "help"`)
    return value
  }
  const onOff = (value: string | undefined): boolean => {
    if (value !== 'on' && value !== 'off') throw new Error('needs on or off')
    return value === 'on'
  }
  switch (command) {
    case undefined:
      return ''
    case 'call': {
      const extension = need(a, 'extension')
      return `call ${b === undefined ? simulator.incomingCall(extension) : simulator.incomingCall(extension, b)}`
    }
    case 'dial':
      return `call ${simulator.outgoingCall(need(a, 'extension'), need(b, 'destination'))}`
    case 'answer':
      simulator.answer(need(a, 'call id'))
      return 'answered'
    case 'hold':
      simulator.hold(need(a, 'call id'), need(b, 'extension'))
      return 'held'
    case 'retrieve':
      simulator.retrieve(need(a, 'call id'), need(b, 'extension'))
      return 'retrieved'
    case 'hangup':
      simulator.hangup(need(a, 'call id'), b)
      return 'cleared'
    case 'dnd':
      simulator.setDndAtPhone(need(a, 'extension'), onOff(b))
      return `dnd ${a} ${b}`
    case 'presence':
      simulator.setActivity(need(a, 'extension'), need(b, 'activity'))
      return `presence ${a} ${b}`
    case 'add':
      simulator.addUser({ e164: need(a, 'extension'), cn: need(b, 'long name'), ...(c === undefined ? {} : { emails: [c] }) })
      return `added ${a}`
    case 'remove':
      simulator.removeUser(need(a, 'extension'))
      return `removed ${a}`
    case 'email':
      simulator.updateUser(need(a, 'extension'), { emails: [need(b, 'e-mail')] })
      return `e-mail of ${a} is ${b}`
    case 'drop':
      return `dropped ${simulator.dropAllConnections()} connection(s)`
    case 'freeze':
      simulator.freeze(onOff(a))
      return `frozen ${a}`
    case 'status': {
      const calls = simulator.calls().map((call) => `  call ${call.callId}: ${call.legs.map((leg) => `${leg.e164}=0x${leg.state.toString(16)}`).join(' ')}`)
      return [
        `connections ${simulator.connectionCount}, monitors ${simulator.monitorCount()}, presence subscriptions ${simulator.presenceSubscriptionCount()}, stats ${JSON.stringify(simulator.stats)}`,
        ...(calls.length === 0 ? ['  no calls'] : calls),
      ].join('\n')
    }
    case 'help':
      return HELP.slice(HELP.indexOf('Commands on stdin:'))
    case 'quit':
    case 'exit':
      return 'quit'
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}; type "help"`)
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error))
  process.exit(2)
})
