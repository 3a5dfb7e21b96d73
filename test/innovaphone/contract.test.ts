import t from 'tap'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { InnovaphoneAdapter } from '../../gateway/src/adapters/innovaphone/adapter.js'
import { InnovaphoneSimulator } from '../../gateway/src/adapters/innovaphone/simulator/innovaphone-simulator.js'
import { runSimulatorContract } from '../contract/pbx-adapter.contract.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { APP, innovaphoneConfig, USERS } from './fixtures/harness.js'

runSimulatorContract(t, 'innovaphone', async () => {
  const simulator = new InnovaphoneSimulator({ users: USERS.slice(0, 2), ...APP })
  const { port } = await simulator.start()
  const adapter = new InnovaphoneAdapter(innovaphoneConfig({ id: 'inno-contract', port }), {
    logger: captureLogger('debug').logger, clock: systemClock, counters: new Counters(),
  })
  return { simulator, adapter, extensions: ['201', '202'] }
})
