#!/usr/bin/env node
/* Interactive OpenScape Business CSTA simulator: `npm run sim:osbiz -- --help`. Console output is the UI here. */
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { OsbizUserSchema } from '../config.js'
import { OsbizSimulator, type SimulatorUser } from './osbiz-simulator.js'

const HELP = `osbiz simulator: an OpenScape Business CSTA link (ECMA-323 XML, 8-byte header) on TCP

Usage: npm run sim:osbiz -- [options]

Options:
  --host ADDR                   listen address (default 127.0.0.1)
  --port N                      TCP port (default 8800, 0 = any free port)
  --users FILE.json             [{"extension":"201","name":"Alice","email":"alice@contoso.example"}, ...]
                                (default: 201 alice, 202 bob, 203 carol)
  --application-id ID           require this applicationID (default: accept any)
  --username NAME               require this user (with --application-id)
  --password SECRET             require this password (with --application-id)
  --session-duration S          longest session granted; the link closes at 2x without a reset (default 150)
  --system-status-interval S    send SystemStatus every S seconds; 2 unanswered drop the link (default off)
  --max-monitors N              overallMonitorLimitExceeded above N monitors
  --max-links N                 concurrent links (default 4)
  -h, --help                    this text

Commands on stdin:
  call EXT [FROM]               an external (or internal FROM) call rings at EXT; prints the call id
  dial EXT TO                   EXT calls TO
  answer CALL                   the ringing party answers
  hold CALL EXT | retrieve CALL EXT
  hangup CALL [EXT]             EXT (default: the caller) hangs up; the call ends
  dnd EXT on|off                the person presses the DND key
  drop                          cut every client connection
  status                        links, monitors, calls and DND
  help | quit
`

const DEMO_USERS: SimulatorUser[] = [
  { extension: '201', name: 'Alice', email: 'alice@contoso.example' },
  { extension: '202', name: 'Bob', email: 'bob@contoso.example' },
  { extension: '203', name: 'Carol', email: 'carol@contoso.example' },
]

const UsersFileSchema = Type.Array(OsbizUserSchema, { minItems: 1 })

function numberOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const parsed = Number(value)
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`--${name} needs a non-negative number, got ${JSON.stringify(value)}`)
  return parsed
}

async function loadUsers(file: string | undefined): Promise<SimulatorUser[]> {
  if (file === undefined) return DEMO_USERS
  const json: unknown = JSON.parse(await readFile(file, 'utf8'))
  if (!Value.Check(UsersFileSchema, json)) {
    const problems = [...Value.Errors(UsersFileSchema, json)].map((error) => `${error.path || '/'}: ${error.message}`)
    throw new Error(`${file} is not a users list:\n  ${problems.join('\n  ')}`)
  }
  return json
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      users: { type: 'string' },
      'application-id': { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      'session-duration': { type: 'string' },
      'system-status-interval': { type: 'string' },
      'max-monitors': { type: 'string' },
      'max-links': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) {
    process.stdout.write(HELP)
    return
  }
  const users = await loadUsers(values.users)
  const applicationId = values['application-id']
  const simulator = new OsbizSimulator({
    host: values.host ?? '127.0.0.1',
    port: numberOption(values.port, 'port') ?? 8800,
    users,
    ...(applicationId === undefined ? {} : {
      credentials: {
        applicationId,
        ...(values.username === undefined ? {} : { username: values.username }),
        ...(values.password === undefined ? {} : { password: values.password }),
      },
    }),
    ...optional('sessionDurationS', numberOption(values['session-duration'], 'session-duration')),
    ...optional('systemStatusIntervalS', numberOption(values['system-status-interval'], 'system-status-interval')),
    ...optional('maxMonitors', numberOption(values['max-monitors'], 'max-monitors')),
    ...optional('maxLinks', numberOption(values['max-links'], 'max-links')),
  })
  const { host, port } = await simulator.start()
  console.log(`OSBiz CSTA simulator on ${host}:${port} with ${users.map((user) => `${user.extension} ${user.name}`).join(', ')}`)
  console.log('type "help" for commands')
  simulator.onEventSent((record) => console.log(`  -> ${record.type} for ${record.extension}`))

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

function optional<K extends string>(key: K, value: number | undefined): Partial<Record<K, number>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, number>)
}

function runCommand(simulator: OsbizSimulator, users: SimulatorUser[], words: string[]): string {
  const [command, a, b] = words
  const need = (value: string | undefined, what: string): string => {
    if (value === undefined) throw new Error(`missing ${what}; type "help"`)
    return value
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
    case 'dnd': {
      const state = need(b, 'on|off')
      if (state !== 'on' && state !== 'off') throw new Error('dnd needs on or off')
      simulator.setDndAtPhone(need(a, 'extension'), state === 'on')
      return `dnd ${a} ${state}`
    }
    case 'drop':
      return `dropped ${simulator.dropAllConnections()} connection(s)`
    case 'status': {
      const calls = simulator.calls().map((call) => `  call ${call.callId}: ${call.legs.map((leg) => `${leg.device}=${leg.state}`).join(' ')}`)
      return [
        `links ${simulator.connectionCount}, monitors ${simulator.monitorCount}, stats ${JSON.stringify(simulator.stats)}`,
        `  dnd ${users.map((user) => `${user.extension}=${simulator.getDnd(user.extension) ? 'on' : 'off'}`).join(' ')}`,
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
