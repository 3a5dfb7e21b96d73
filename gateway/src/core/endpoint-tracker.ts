import type { CallState, DndOwner, EndpointData } from '../../protocol/schemas.js'
import type { CallLegState, PbxObservation } from '../adapters/types.js'

type LiveLeg = Exclude<CallLegState, 'cleared'>

interface EndpointRecord {
  connectorId: string
  endpointId: string
  calls: Map<string, LiveLeg>
  dnd: boolean
  dndOwner: DndOwner
  changedAt: number
  cause: string
}

/**
 * Aggregates per-call observations into one state per endpoint and keeps who owns its DND.
 *
 * Aggregation (DESIGN §5): busy if any call is connected or dialling; held if every live call is held;
 * ringing if only alerting calls; idle otherwise.
 *
 * DND ownership: a DND we switched on (confirmed by the PBX's answer to our command) is the gateway's; any other
 * DND is the person's. `ownedDnd` survives restarts (the caller persists it) so a DND we set before a crash is
 * still ours when the snapshot shows it again, and is released when the trigger ends.
 */
export class EndpointTracker {
  readonly #endpoints = new Map<string, EndpointRecord>()
  readonly #ownedDnd: Set<string>

  constructor(ownedDnd: Iterable<string> = []) {
    this.#ownedDnd = new Set(ownedDnd)
  }

  static key(connectorId: string, endpointId: string): string {
    return `${connectorId}/${endpointId}`
  }

  /** Keys of endpoints whose DND the gateway owns; persisted by the caller. */
  ownedDnd(): string[] {
    return [...this.#ownedDnd].sort()
  }

  /**
   * Claims DND ownership before our command is sent (write-ahead): if the process dies after the PBX switched
   * DND on but before its answer arrived, the snapshot after the restart still knows the DND is ours.
   * Returns false when the person already has DND on (then it stays theirs and nothing is claimed).
   */
  claimDnd(connectorId: string, endpointId: string): boolean {
    const key = EndpointTracker.key(connectorId, endpointId)
    const record = this.#endpoints.get(key)
    if (record?.dnd && record.dndOwner === 'user') return false
    this.#ownedDnd.add(key)
    return true
  }

  /** Drops a claim whose command failed, unless the PBX confirmed our DND meanwhile. */
  releaseClaim(connectorId: string, endpointId: string): void {
    const key = EndpointTracker.key(connectorId, endpointId)
    const record = this.#endpoints.get(key)
    if (!(record?.dnd && record.dndOwner === 'gateway')) this.#ownedDnd.delete(key)
  }

  get(connectorId: string, endpointId: string): EndpointData | undefined {
    const record = this.#endpoints.get(EndpointTracker.key(connectorId, endpointId))
    return record ? toData(record) : undefined
  }

  all(): EndpointData[] {
    return [...this.#endpoints.values()].map(toData)
  }

  /** Forgets a connector's endpoints (connector removed). */
  dropConnector(connectorId: string): void {
    for (const [key, record] of this.#endpoints) if (record.connectorId === connectorId) this.#endpoints.delete(key)
  }

  /**
   * Applies one observation. Returns the endpoint's new published state when anything an observer can see
   * changed (state, call count, DND or owner), otherwise undefined.
   */
  apply(connectorId: string, observation: PbxObservation): EndpointData | undefined {
    if (observation.kind === 'directory' || observation.kind === 'link') return undefined
    const key = EndpointTracker.key(connectorId, observation.endpointId)
    let record = this.#endpoints.get(key)
    const before = record ? fingerprint(record) : ''
    if (!record) {
      record = { connectorId, endpointId: observation.endpointId, calls: new Map(), dnd: false, dndOwner: null, changedAt: observation.at, cause: 'new' }
      this.#endpoints.set(key, record)
    }
    switch (observation.kind) {
      case 'call':
        if (observation.state === 'cleared') record.calls.delete(observation.callId)
        else record.calls.set(observation.callId, observation.state)
        record.cause = `call.${observation.state}`
        break
      case 'snapshot':
        record.calls = new Map(observation.calls.map((c) => [c.callId, c.state]))
        this.#applyDnd(key, record, observation.dnd, false, true)
        record.cause = 'snapshot'
        break
      case 'dnd':
        this.#applyDnd(key, record, observation.dnd, observation.byCommand, false)
        record.cause = observation.byCommand ? 'dnd.command' : 'dnd.user'
        break
    }
    record.changedAt = observation.at
    return fingerprint(record) === before ? undefined : toData(record)
  }

  #applyDnd(key: string, record: EndpointRecord, dnd: boolean, byCommand: boolean, fromSnapshot: boolean): void {
    if (!dnd) {
      // Whoever switched it off, nothing is owned any more. A person clearing our DND shows as cause dnd.user.
      record.dnd = false
      record.dndOwner = null
      this.#ownedDnd.delete(key)
      return
    }
    if (byCommand) {
      // Our command confirmed. If the person had DND on already, it stays theirs: we only confirmed it.
      const personHadIt = record.dnd && record.dndOwner === 'user'
      record.dnd = true
      record.dndOwner = personHadIt ? 'user' : 'gateway'
      if (personHadIt) this.#ownedDnd.delete(key)
      else this.#ownedDnd.add(key)
      return
    }
    if (record.dnd && !fromSnapshot) return // a repeated event for the same value changes nothing
    record.dnd = true
    // Ours if we set or claimed it: the PBX's event may overtake the answer to our command, and a snapshot
    // after a reconnect or restart shows DND we set earlier.
    record.dndOwner = this.#ownedDnd.has(key) ? 'gateway' : 'user'
  }
}

export function aggregateCallState(calls: Iterable<LiveLeg>): CallState {
  let live = 0
  let held = 0
  let alerting = 0
  for (const leg of calls) {
    live++
    if (leg === 'connected' || leg === 'dialing') return 'busy'
    if (leg === 'held') held++
    else if (leg === 'alerting') alerting++
  }
  if (live === 0) return 'idle'
  if (held === live) return 'held'
  if (alerting === live) return 'ringing'
  // Some held, some alerting (a call waiting while another is on hold): the person is occupied.
  return 'held'
}

function toData(record: EndpointRecord): EndpointData {
  return {
    connectorId: record.connectorId,
    endpointId: record.endpointId,
    state: aggregateCallState(record.calls.values()),
    calls: record.calls.size,
    dnd: record.dnd,
    dndOwner: record.dndOwner,
    changedAt: record.changedAt,
    cause: record.cause,
  }
}

function fingerprint(record: EndpointRecord): string {
  return `${aggregateCallState(record.calls.values())}|${record.calls.size}|${record.dnd}|${record.dndOwner}`
}
