import t from 'tap'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { AvayaIpoAdapter } from '../../gateway/src/adapters/avaya-ipo/adapter.js'
import { AvayaIpoSimulator } from '../../gateway/src/adapters/avaya-ipo/simulator/avaya-ipo-simulator.js'
import { runSimulatorContract } from '../contract/pbx-adapter.contract.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { avayaConfig, CREDENTIALS, tlsMaterial } from './fixtures/harness.js'

const users = [
  { extension: '201', name: 'Alice', email: 'alice@contoso.example' },
  { extension: '202', name: 'Bob', email: 'bob@contoso.example' },
]

runSimulatorContract(t, 'avaya-ipo', async () => {
  const tls = await tlsMaterial()
  const simulator = new AvayaIpoSimulator({ users, credentials: CREDENTIALS, tls: { certPem: tls.certPem, keyPem: tls.keyPem } })
  const { port } = await simulator.start()
  // The contract sets DND through the adapter, which needs the experimental Send All Calls option on.
  const config = avayaConfig({ id: 'ipo-contract', port, tls: { caFile: tls.caFile }, experimentalSetDnd: true })
  const adapter = new AvayaIpoAdapter(config, { logger: captureLogger('debug').logger, clock: systemClock, counters: new Counters() })
  return { simulator, adapter, extensions: users.map((user) => user.extension) }
})
