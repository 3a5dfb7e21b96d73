import t from 'tap'
import { mqttDecodeTarget } from '../../bench/fuzz/targets/protocol.js'
import { fuzzInTest } from './fixtures/fuzz-in-test.js'

t.setTimeout(240_000)
await fuzzInTest(t, mqttDecodeTarget)
