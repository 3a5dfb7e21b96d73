import type { DirectoryEntry } from '../../protocol/schemas.js'
import type { AdapterDefinition, PbxObservation } from '../adapters/types.js'
import type { ConnectorConfig } from '../app.js'
import type { Clock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import type { Logger } from 'pino'

export interface ConnectionTestResult {
  ok: boolean
  /** What happened, in plain words. */
  message: string
  users: number
  sampleExtensions: string[]
  durationMs: number
}

/**
 * "Test connection": runs the adapter with the submitted config on its own (not the gateway's running one), waits
 * for the link to come up and the directory to arrive, then stops it. Reports what it found, or the adapter's own
 * offline reason.
 */
export async function testConnection(
  definition: AdapterDefinition,
  config: ConnectorConfig,
  deps: { logger: Logger; clock: Clock },
  timeoutMs = 15_000,
): Promise<ConnectionTestResult> {
  const started = deps.clock.now()
  const adapter = definition.create({ ...config, id: `${config.id}-test` }, {
    logger: deps.logger.child({ component: 'connection-test', connector: config.id, pbx: config.type }),
    clock: deps.clock,
    counters: new Counters(),
  })
  let connected = false
  let directory: DirectoryEntry[] | undefined
  let lastReason: string | undefined
  const outcome = new Promise<void>((resolve) => {
    const done = (): void => resolve()
    const timer = setTimeout(done, timeoutMs)
    const off = adapter.onObservation((observation: PbxObservation) => {
      if (observation.kind === 'link') {
        if (observation.state === 'connected') connected = true
        if (observation.state === 'offline') {
          lastReason = observation.reason ?? 'the PBX closed the link'
          // The first failure is the answer: the adapter would only retry the same thing.
          clearTimeout(timer)
          off()
          done()
        }
      }
      if (observation.kind === 'directory') {
        directory = observation.entries
        if (connected) {
          clearTimeout(timer)
          off()
          done()
        }
      }
    })
  })
  try {
    await adapter.start()
    await outcome
  } catch (err) {
    lastReason = (err as Error).message
  } finally {
    await adapter.stop().catch(() => undefined)
  }
  const durationMs = deps.clock.now() - started
  const entries = directory ?? []
  const sampleExtensions = entries.slice(0, 5).map((entry) => entry.endpointId)
  if (connected && directory) {
    return { ok: true, message: `Connected to the PBX and found ${entries.length} user(s).`, users: entries.length, sampleExtensions, durationMs }
  }
  if (lastReason) return { ok: false, message: `Could not connect: ${lastReason}`, users: 0, sampleExtensions: [], durationMs }
  return {
    ok: false,
    message: connected
      ? `Connected, but the PBX gave no user list within ${Math.round(timeoutMs / 1000)} s: check the users or the PBX's monitoring limits.`
      : `No answer from the PBX within ${Math.round(timeoutMs / 1000)} s: check the host and port, and that the box may reach the PBX (firewall).`,
    users: 0, sampleExtensions: [], durationMs,
  }
}
