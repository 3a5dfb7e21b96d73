import t from 'tap'
import { systemClock } from '../../gateway/src/core/clock.js'
import { Counters } from '../../gateway/src/core/counters.js'
import { InnovaphoneAdapter } from '../../gateway/src/adapters/innovaphone/adapter.js'
import { InnovaphoneSimulator } from '../../gateway/src/adapters/innovaphone/simulator/innovaphone-simulator.js'
import { runAdapterContract } from '../contract/pbx-adapter.contract.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { APP, innovaphoneConfig, USERS } from './fixtures/harness.js'

runAdapterContract(t, {
  name: 'innovaphone',
  async start() {
    const simulator = new InnovaphoneSimulator({ users: USERS.slice(0, 2), ...APP })
    const { port } = await simulator.start()
    const adapter = new InnovaphoneAdapter(innovaphoneConfig({ id: 'inno-contract', port }), {
      logger: captureLogger('debug').logger, clock: systemClock, counters: new Counters(),
    })
    return {
      adapter,
      extensions: ['201', '202'],
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
