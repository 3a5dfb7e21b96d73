import t from 'tap'
import { consoleHttpTarget } from '../../bench/fuzz/targets/relay.js'
import { fuzzInTest } from './fixtures/fuzz-in-test.js'

t.setTimeout(300_000)
// A real server per case: 5,000 under the fixed seed and 5,000 under a random one keep the file within minutes.
await fuzzInTest(t, consoleHttpTarget, { cases: 5000 })
