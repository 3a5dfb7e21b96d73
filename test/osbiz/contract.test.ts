import t from 'tap'
import { systemClock } from '../../gateway/src/core/clock.js'
import { Counters } from '../../gateway/src/core/counters.js'
import { OsbizAdapter } from '../../gateway/src/adapters/osbiz/adapter.js'
import { parseOsbizConfig } from '../../gateway/src/adapters/osbiz/config.js'
import { OsbizSimulator } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { runAdapterContract } from '../contract/pbx-adapter.contract.js'
import { captureLogs } from './fixtures/logs.js'

const users = [
  { extension: '201', name: 'Alice', email: 'alice@contoso.example' },
  { extension: '202', name: 'Bob', email: 'bob@contoso.example' },
]

runAdapterContract(t, {
  name: 'osbiz',
  async start() {
    const simulator = new OsbizSimulator({ users, credentials: { applicationId: 'gateway', username: 'csta', password: 'secret' } })
    const { host, port } = await simulator.start()
    const parsed = parseOsbizConfig({
      id: 'osbiz-contract', type: 'osbiz', host, port, applicationId: 'gateway', username: 'csta', password: 'secret', users,
    })
    if (!parsed.ok) throw new Error(parsed.errors.join('; '))
    const adapter = new OsbizAdapter(parsed.config, { logger: captureLogs().logger, clock: systemClock, counters: new Counters() })
    return {
      adapter,
      extensions: users.map((user) => user.extension),
      pbx: {
        incomingCall: async (extension) => simulator.incomingCall(extension),
        answer: async (callId) => simulator.answer(callId),
        hangup: async (callId) => simulator.hangup(callId),
        hold: async (callId, extension) => simulator.hold(callId, extension),
        retrieve: async (callId, extension) => simulator.retrieve(callId, extension),
        setDndAtPhone: async (extension, on) => simulator.setDndAtPhone(extension, on),
        getDnd: async (extension) => simulator.getDnd(extension),
        dropConnection: async () => {
          simulator.dropAllConnections()
        },
      },
      async stop() {
        await adapter.stop()
        await simulator.stop()
      },
    }
  },
})
