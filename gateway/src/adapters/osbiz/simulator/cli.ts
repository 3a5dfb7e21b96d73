#!/usr/bin/env node
/* Interactive OpenScape Business CSTA simulator: `npm run sim:osbiz -- --help`. The loop and shared commands are sim-kit's. */
import { parseArgs } from 'node:util'
import { Type } from '@sinclair/typebox'
import { OsbizUserSchema } from '../config.js'
import { loadUsers, numberOption, portOption, runSimulatorCli, SHARED_COMMANDS } from '../../sim-kit/command-loop.js'
import { OsbizSimulator } from './osbiz-simulator.js'

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
${SHARED_COMMANDS}`

const DEMO_USERS = [
  { extension: '201', name: 'Alice', email: 'alice@contoso.example' },
  { extension: '202', name: 'Bob', email: 'bob@contoso.example' },
  { extension: '203', name: 'Carol', email: 'carol@contoso.example' },
]

runSimulatorCli(HELP, async () => {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' }, port: { type: 'string' }, users: { type: 'string' }, 'application-id': { type: 'string' },
      username: { type: 'string' }, password: { type: 'string' }, 'session-duration': { type: 'string' },
      'system-status-interval': { type: 'string' }, 'max-monitors': { type: 'string' }, 'max-links': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) return 'help'
  const users = await loadUsers(values.users, Type.Array(OsbizUserSchema, { minItems: 1 }), DEMO_USERS)
  const applicationId = values['application-id']
  const simulator = new OsbizSimulator({
    host: values.host ?? '127.0.0.1',
    port: portOption(values.port, 8800),
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
  simulator.onEventSent((record) => console.log(`  -> ${record.type} for ${record.extension}`))
  return {
    simulator,
    banner: [`OSBiz CSTA simulator on ${host}:${port} with ${users.map((user) => `${user.extension} ${user.name}`).join(', ')}`],
    status: () => [`links ${simulator.connectionCount}, monitors ${simulator.monitorCount}, stats ${JSON.stringify(simulator.stats)}`],
  }
})

function optional<K extends string>(key: K, value: number | undefined): Partial<Record<K, number>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, number>)
}
