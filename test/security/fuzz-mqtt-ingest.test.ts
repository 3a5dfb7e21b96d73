import t from 'tap'
import { mqttIngestTarget } from '../../bench/fuzz/targets/relay.js'
import { fuzzInTest } from './fixtures/fuzz-in-test.js'

// One broker round trip per case, about 200 cases/s alone on 2 cores: 10,000 cases take a minute or two in CI.
t.setTimeout(300_000)
await fuzzInTest(t, mqttIngestTarget, { cases: 5000 })
