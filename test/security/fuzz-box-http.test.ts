import t from 'tap'
import { boxHttpTarget } from '../../bench/fuzz/targets/box.js'
import { fuzzInTest } from './fixtures/fuzz-in-test.js'

t.setTimeout(170_000)
await fuzzInTest(t, boxHttpTarget)
