import t from 'tap'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { OsbizAdapter } from '../../gateway/src/adapters/osbiz/adapter.js'
import { parseOsbizConfig } from '../../gateway/src/adapters/osbiz/config.js'
import { OsbizSimulator } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { runSimulatorContract } from '../contract/pbx-adapter.contract.js'
import { captureLogs } from './fixtures/logs.js'

const users = [
  { extension: '201', name: 'Alice', email: 'alice@contoso.example' },
  { extension: '202', name: 'Bob', email: 'bob@contoso.example' },
]

runSimulatorContract(t, 'osbiz', async () => {
  const simulator = new OsbizSimulator({ users, credentials: { applicationId: 'gateway', username: 'csta', password: 'secret' } })
  const { host, port } = await simulator.start()
  const parsed = parseOsbizConfig({
    id: 'osbiz-contract', type: 'osbiz', host, port, applicationId: 'gateway', username: 'csta', password: 'secret', users,
  })
  if (!parsed.ok) throw new Error(parsed.errors.join('; '))
  const adapter = new OsbizAdapter(parsed.config, { logger: captureLogs().logger, clock: systemClock, counters: new Counters() })
  return { simulator, adapter, extensions: users.map((user) => user.extension) }
})
