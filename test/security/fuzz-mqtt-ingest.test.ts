import t from 'tap'
import { mqttIngestTarget } from '../../bench/fuzz/targets/relay.js'
import { fuzzInTest } from './fixtures/fuzz-in-test.js'

// About 23 cases/s on 2 loaded cores (one broker round trip each): 10,000 cases take 7-8 minutes.
t.setTimeout(600_000)
// A real server per case: 5,000 under the fixed seed and 5,000 under a random one keep the file within minutes.
await fuzzInTest(t, mqttIngestTarget, { cases: 5000 })
