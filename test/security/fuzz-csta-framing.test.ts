import t from 'tap'
import { cstaFramingTarget } from '../../bench/fuzz/targets/pbx.js'
import { fuzzInTest } from './fixtures/fuzz-in-test.js'

t.setTimeout(240_000)
await fuzzInTest(t, cstaFramingTarget)
