#!/usr/bin/env node
/* Interactive innovaphone App Platform simulator: `npm run sim:innovaphone -- --help`. The loop and shared commands are sim-kit's. */
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { Type } from '@sinclair/typebox'
import { loadUsers, need, onOff, portOption, runSimulatorCli, SHARED_COMMANDS } from '../../sim-kit/command-loop.js'
import { InnovaphoneSimulator, type SimApi } from './innovaphone-simulator.js'

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
${SHARED_COMMANDS}  presence EXT ACTIVITY    any other activity (away, busy, ...) on the tel: contact
  freeze on|off            keep connections open but answer nothing (a hung PBX)
`

const DEMO_USERS = [
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

function parseApis(list: string | undefined): SimApi[] | undefined {
  if (list === undefined) return undefined
  const apis = list.split(',').map((api) => api.trim()).filter((api) => api !== '')
  for (const api of apis) if (api !== 'RCC' && api !== 'PbxApi' && api !== 'PbxTableUsers') throw new Error(`--apis: unknown API ${JSON.stringify(api)} (RCC, PbxApi, PbxTableUsers)`)
  return apis as SimApi[]
}

runSimulatorCli(HELP, async () => {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' }, port: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, app: { type: 'string' },
      password: { type: 'string' }, apis: { type: 'string' }, users: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) return 'help'
  if ((values.cert === undefined) !== (values.key === undefined)) throw new Error('--cert and --key go together')
  const users = await loadUsers(values.users, UsersFileSchema, DEMO_USERS)
  const apis = parseApis(values.apis)
  const simulator = new InnovaphoneSimulator({
    host: values.host ?? '127.0.0.1',
    port: portOption(values.port, 8080),
    appName: values.app ?? 'gateway',
    appPassword: values.password ?? 'pwd',
    users,
    ...(apis === undefined ? {} : { apis }),
    ...(values.cert === undefined || values.key === undefined ? {} : { tls: { cert: await readFile(values.cert, 'utf8'), key: await readFile(values.key, 'utf8') } }),
  })
  const { url } = await simulator.start()
  return {
    simulator,
    banner: [`innovaphone simulator at ${url} (App object "${values.app ?? 'gateway'}") with ${users.map((user) => `${user.e164} ${user.cn}`).join(', ')}`],
    status: () => [`connections ${simulator.connectionCount}, monitors ${simulator.monitorCount()}, presence subscriptions ${simulator.presenceSubscriptionCount()}, stats ${JSON.stringify(simulator.stats)}`],
    commands: {
      presence: ([extension, activity]) => {
        simulator.setActivity(need(extension, 'extension'), need(activity, 'activity'))
        return `presence ${extension} ${activity}`
      },
      freeze: ([state]) => {
        simulator.freeze(onOff(state))
        return `frozen ${state}`
      },
    },
  }
})
