import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import type { TSchema, Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { PhoneSystem } from './phone-system.js'

/**
 * The interactive side every simulator CLI shares: start-up and shutdown, the stdin command loop and the
 * commands on the phone-system model (call, dial, answer, hold, retrieve, hangup, dnd, add, remove, email,
 * drop, status). A vendor CLI parses its own options, builds its simulator and adds only its own commands
 * and status lines. Console output is the UI here.
 */

export interface SimulatorCli {
  simulator: PhoneSystem<unknown> & { stop(): Promise<void> }
  /** Printed once the simulator listens (address, people, fingerprints). */
  banner: string[]
  /** The vendor's own status line(s): links, subscriptions, counters. */
  status(): string[]
  /** Commands beyond the shared ones: the words after the command name in, the answer out. */
  commands?: Record<string, (words: Array<string | undefined>) => string>
}

/** The shared commands, for the vendor's help text. */
export const SHARED_COMMANDS = `  call EXT [FROM]          an outside call (or one from extension FROM) rings at EXT; prints the call id
  dial EXT TO              EXT calls TO
  answer CALL              the ringing party answers
  hold CALL EXT | retrieve CALL EXT
  hangup CALL [EXT]        EXT (default: the caller) hangs up; the call ends for everyone
  dnd EXT on|off           the person presses the DND key
  add EXT "NAME" [EMAIL] | remove EXT | email EXT EMAIL
  drop                     cut every client connection
  status                   links, calls and DND
  help | quit
`

/** Runs a simulator CLI: `start` parses the options and starts the simulator, or answers 'help'. */
export function runSimulatorCli(help: string, start: () => Promise<SimulatorCli | 'help'>): void {
  start().then((cli) => {
    if (cli === 'help') process.stdout.write(help)
    else commandLoop(help, cli)
  }).catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error))
    process.exit(2)
  })
}

function commandLoop(help: string, cli: SimulatorCli): void {
  for (const line of [...cli.banner, 'type "help" for commands']) console.log(line)
  const input = createInterface({ input: process.stdin, terminal: false })
  const shutdown = async (): Promise<void> => {
    input.close()
    await cli.simulator.stop()
    process.exit(0)
  }
  process.once('SIGINT', () => void shutdown())
  process.once('SIGTERM', () => void shutdown())
  input.on('close', () => void shutdown())
  input.on('line', (line) => {
    try {
      const output = runCommand(cli, help, splitWords(line))
      if (output === 'quit') return void shutdown()
      if (output !== '') console.log(output)
    } catch (error) {
      console.log(`error: ${error instanceof Error ? error.message : String(error)}`)
    }
  })
}

/** Words separated by blanks; "a quoted phrase" is one word. */
export function splitWords(line: string): string[] {
  return line.match(/"[^"]*"|\S+/g)?.map((word) => word.replace(/^"|"$/g, '')) ?? []
}

export function need(value: string | undefined, what: string): string {
  if (value === undefined) throw new Error(`missing ${what}; type "help"`)
  return value
}

export function onOff(value: string | undefined): boolean {
  if (value !== 'on' && value !== 'off') throw new Error('needs on or off')
  return value === 'on'
}

/** One command line against the simulator; 'quit' asks the loop to stop. */
export function runCommand(cli: SimulatorCli, help: string, words: string[]): string {
  const { simulator: pbx } = cli
  const [command, a, b, c] = words
  const own = command === undefined ? undefined : cli.commands?.[command]
  if (own !== undefined) return own(words.slice(1))
  switch (command) {
    case undefined: return ''
    case 'call': return `call ${pbx.incomingCall(need(a, 'extension'), b)}`
    case 'dial': return `call ${pbx.outgoingCall(need(a, 'extension'), need(b, 'destination'))}`
    case 'answer': pbx.answer(need(a, 'call id')); return 'answered'
    case 'hold': pbx.hold(need(a, 'call id'), need(b, 'extension')); return 'held'
    case 'retrieve': pbx.retrieve(need(a, 'call id'), need(b, 'extension')); return 'retrieved'
    case 'hangup': pbx.hangup(need(a, 'call id'), b); return 'cleared'
    case 'dnd': pbx.setDndAtPhone(need(a, 'extension'), onOff(b)); return `dnd ${a} ${b}`
    case 'add': pbx.addPerson({ extension: need(a, 'extension'), name: need(b, 'name'), email: c }); return `added ${a}`
    case 'remove': pbx.removePerson(need(a, 'extension')); return `removed ${a}`
    case 'email': pbx.updatePerson(need(a, 'extension'), { email: need(b, 'e-mail') }); return `e-mail of ${a} is ${b}`
    case 'drop': return `dropped ${pbx.dropAllConnections()} connection(s)`
    case 'status': {
      const calls = pbx.liveCalls().map((call) => `  call ${call.id}: ${call.legs.map((leg) => `${leg.party}=${pbx.legLabel(call, leg)}`).join(' ')}`)
      return [
        ...cli.status(),
        `  dnd ${pbx.people().map((person) => `${person.extension}=${person.dnd ? 'on' : 'off'}`).join(' ')}`,
        ...(calls.length === 0 ? ['  no calls'] : calls),
      ].join('\n')
    }
    case 'help': return help.slice(help.indexOf('Commands on stdin:'))
    case 'quit':
    case 'exit': return 'quit'
    default: throw new Error(`unknown command ${JSON.stringify(command)}; type "help"`)
  }
}

/** A port option: 0..65535, `fallback` when absent. */
export function portOption(value: string | undefined, fallback: number): number {
  const port = Number(value ?? fallback)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port needs 0..65535, got ${JSON.stringify(value)}`)
  return port
}

/** A non-negative number option, undefined when absent. */
export function numberOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const parsed = Number(value)
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`--${name} needs a non-negative number, got ${JSON.stringify(value)}`)
  return parsed
}

/** The people from a `--users` JSON file checked against the vendor's schema, or the demo people. */
export async function loadUsers<S extends TSchema>(file: string | undefined, schema: S, demo: Static<S>): Promise<Static<S>> {
  if (file === undefined) return demo
  const json: unknown = JSON.parse(await readFile(file, 'utf8'))
  if (!Value.Check(schema, json)) {
    const problems = [...Value.Errors(schema, json)].map((error) => `${error.path || '/'}: ${error.message}`)
    throw new Error(`${file} is not a users list:\n  ${problems.join('\n  ')}`)
  }
  return json
}
