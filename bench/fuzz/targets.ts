import type { FuzzTarget } from './runner.js'
import { boxHttpTarget } from './targets/box.js'
import { PBX_TARGETS } from './targets/pbx.js'
import { mqttDecodeTarget } from './targets/protocol.js'
import { consoleHttpTarget, enrollmentCsrTarget, graphWebhookTarget, mqttIngestTarget } from './targets/relay.js'

/** Every fuzz target, in the order `npm run fuzz` runs them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each target has its own input type
export const FUZZ_TARGETS: ReadonlyArray<FuzzTarget<any>> = [
  ...PBX_TARGETS, mqttDecodeTarget, mqttIngestTarget, graphWebhookTarget, enrollmentCsrTarget, consoleHttpTarget, boxHttpTarget,
]
