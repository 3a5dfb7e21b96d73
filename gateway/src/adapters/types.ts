import type { Logger } from 'pino'
import type { DirectoryEntry, LinkState } from '../../protocol/schemas.js'
import type { Clock } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'

/**
 * The boundary between the gateway core and one PBX connection. Adapters know nothing of MQTT, HTTP or the
 * config file: they turn the vendor's wire protocol into these observations and carry out DND commands.
 */

/** State of one call leg as seen from the monitored endpoint. */
export type CallLegState = 'alerting' | 'dialing' | 'connected' | 'held' | 'cleared'

export type PbxObservation =
  /** One call on one endpoint changed. `cleared` ends the call. */
  | { kind: 'call'; endpointId: string; callId: string; state: CallLegState; at: number; cause?: string }
  /** The PBX reported the endpoint's DND flag (an event, or a confirmed command). `byCommand` is true when
   *  the observation is the PBX's positive answer to our own setDnd. */
  | { kind: 'dnd'; endpointId: string; dnd: boolean; at: number; byCommand: boolean }
  /** The full state of one endpoint, read after (re)connecting. It replaces everything known before. */
  | { kind: 'snapshot'; endpointId: string; calls: Array<{ callId: string; state: Exclude<CallLegState, 'cleared'> }>; dnd: boolean; at: number }
  /** The PBX's user list (complete each time). */
  | { kind: 'directory'; entries: DirectoryEntry[] }
  /** Link state changes; `reason` says in plain words what happened and what to do. */
  | { kind: 'link'; state: LinkState; reason?: string; at: number }

export type PbxObservationListener = (observation: PbxObservation) => void

export class AdapterError extends Error {
  constructor(
    /** Stable code, e.g. OSBIZ_UNKNOWN_DEVICE, OSBIZ_NOT_CONNECTED, OSBIZ_TIMEOUT, OSBIZ_CSTA_ERROR. */
    readonly code: string,
    message: string,
    readonly detail?: Record<string, unknown>,
  ) {
    super(message)
    this.name = 'AdapterError'
  }
}

export interface PbxAdapter {
  readonly connectorId: string
  readonly type: string
  /** Starts connecting and returns at once; link progress arrives as `link` observations. Idempotent. */
  start(): Promise<void>
  /** Closes the link and every timer. Idempotent. */
  stop(): Promise<void>
  /**
   * Sets the endpoint's DND and resolves with the state the PBX confirmed. Rejects with AdapterError when the
   * PBX refuses, times out or the link is down. Setting DND to its current value must resolve (some PBXs answer
   * positively and send no event).
   */
  setDnd(endpointId: string, dnd: boolean): Promise<{ dnd: boolean }>
  /** Registers a listener; returns the function that removes it. */
  onObservation(listener: PbxObservationListener): () => void
}

export interface AdapterDeps {
  /** Already a child logger for this connector. */
  logger: Logger
  clock: Clock
  /** Shared counters; adapters prefix names with their type, e.g. osbiz.frames.malformed. */
  counters: Counters
}

/** One entry of the static adapter registry: the connector config schema and the factory. */
export interface AdapterDefinition<Config extends { id: string; type: string } = { id: string; type: string }> {
  readonly type: string
  /** TypeBox schema of this adapter's connector config (with defaults). */
  readonly configSchema: import('@sinclair/typebox').TSchema
  /**
   * The rules the schema cannot say (one field against another, duplicate entries), each problem in the
   * installer's words and starting with the JSON path of the field, e.g. "/tls: set either caFile or
   * pinnedSha256, not both". Runs on a config that passed the schema; boot and the setup page both call it.
   */
  check(config: Config): string[]
  create(config: Config, deps: AdapterDeps): PbxAdapter
}
