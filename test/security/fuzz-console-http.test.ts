import t from 'tap'
import { consoleHttpTarget } from '../../bench/fuzz/targets/relay.js'
import { fuzzInTest } from './fixtures/fuzz-in-test.js'

t.setTimeout(170_000)
await fuzzInTest(t, consoleHttpTarget)
