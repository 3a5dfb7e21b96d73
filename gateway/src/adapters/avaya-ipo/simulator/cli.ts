#!/usr/bin/env node
/* Interactive IP Office MTCTI-3 simulator: `npm run sim:avaya-ipo -- --help`. The loop and shared commands are sim-kit's. */
import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { Type } from '@sinclair/typebox'
import { CALL_STATE_NAMES, CallState } from '../mtcti3/model.js'
import { loadUsers, need, portOption, runSimulatorCli, SHARED_COMMANDS } from '../../sim-kit/command-loop.js'
import { AvayaIpoSimulator } from './avaya-ipo-simulator.js'

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
${SHARED_COMMANDS}  state CALL EXT STATE      set a leg to any CallInfo state (name or number)
  terminate [lines|user]   end subscriptions with SubscribeTerminated
`

const UsersFileSchema = Type.Array(Type.Object({
  extension: Type.String({ pattern: '^[0-9*#]{1,24}$' }),
  name: Type.String(),
  fullName: Type.Optional(Type.String()),
  email: Type.Optional(Type.String()),
}), { minItems: 1 })

const DEMO_USERS = [
  { extension: '201', name: 'alice', fullName: 'Alice Adams', email: 'alice@contoso.example' },
  { extension: '202', name: 'bob', fullName: 'Bob Baker', email: 'bob@contoso.example' },
  { extension: '203', name: 'carol', fullName: 'Carol Clark', email: 'carol@contoso.example' },
]

runSimulatorCli(HELP, async () => {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' }, port: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' },
      username: { type: 'string' }, password: { type: 'string' }, users: { type: 'string' }, 'max-links': { type: 'string' },
      'sac-is-not-dnd': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) return 'help'
  if (values.cert === undefined || values.key === undefined) throw new Error('--cert and --key are required (see --help for an openssl line)')
  const certPem = await readFile(values.cert, 'utf8')
  const users = await loadUsers(values.users, UsersFileSchema, DEMO_USERS)
  const simulator = new AvayaIpoSimulator({
    host: values.host ?? '127.0.0.1', port: portOption(values.port, 8443), tls: { certPem, keyPem: await readFile(values.key, 'utf8') }, users,
    credentials: { username: values.username ?? 'gateway', password: values.password ?? 'secret' },
    maxLinks: Number(values['max-links'] ?? 3), sacTogglesDnd: values['sac-is-not-dnd'] !== true,
  })
  const address = await simulator.start()
  const fingerprint = new X509Certificate(certPem).fingerprint256.replaceAll(':', '').toLowerCase()
  return {
    simulator,
    banner: [
      `IP Office MTCTI-3 simulator on wss://${address.host}:${address.port}/tpkt/openapi with ${users.map((u) => `${u.extension} ${u.name}`).join(', ')}`,
      `certificate SHA-256 (tls.pinnedSha256): ${fingerprint}`,
    ],
    status: () => [`links ${simulator.connectionCount}, subscriptions ${simulator.subscriptionCount()}, stats ${JSON.stringify(simulator.stats)}`],
    commands: {
      state: ([callId, extension, stateName]) => {
        const name = need(stateName, 'state').toUpperCase()
        const state = /^-?\d+$/.test(name) ? Number(name) : (CallState as Record<string, number>)[name]
        if (state === undefined) throw new Error(`unknown state ${name}; one of ${[...CALL_STATE_NAMES.values()].join(' ')}`)
        simulator.setCallState(need(callId, 'call id'), need(extension, 'extension'), state)
        return `call ${callId} ${extension} ${CALL_STATE_NAMES.get(state) ?? state}`
      },
      terminate: ([kind]) => `terminated ${simulator.terminateSubscriptions(kind === 'lines' || kind === 'user' ? kind : 'all')} subscription(s)`,
    },
  }
})
