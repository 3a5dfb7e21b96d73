import type { CallLegState, PbxObservation } from '../types.js'
import type { CstaCallEvent, CstaEvent, LocalConnectionState, SnapshotDeviceResponse } from './csta/model.js'

/**
 * Pure mapping from CSTA events to observations (research §1.8). A device monitor reports every connection
 * of every call the device is in, so each event is first sorted into "about our own connection" or "about
 * another party"; events about another party only change our leg through localConnectionInfo, the switch's
 * statement of our own connection state.
 */

export type EventOutcome =
  | { action: 'observe'; observation: PbxObservation }
  /** Nothing to report; `reason` is for debug logs. */
  | { action: 'ignore'; reason: string }
  /** The event leaves our leg ambiguous: read the endpoint's calls again rather than guess. */
  | { action: 'resnapshot'; endpointId: string; reason: string }

export function normaliseEvent(event: CstaEvent, monitors: ReadonlyMap<string, string>, at: number): EventOutcome {
  const endpointId = monitors.get(event.monitorCrossRefId)
  if (endpointId === undefined) return { action: 'ignore', reason: 'unknown monitorCrossRefID' }
  if (event.kind === 'DoNotDisturbEvent') {
    return { action: 'observe', observation: { kind: 'dnd', endpointId, dnd: event.doNotDisturbOn, at, byCommand: false } }
  }
  const state = legState(event, endpointId)
  if (state === 'resnapshot') return { action: 'resnapshot', endpointId, reason: `${event.kind} of another party without localConnectionInfo` }
  if (state === undefined) return { action: 'ignore', reason: `${event.kind} does not change the leg of ${endpointId}` }
  const observation: PbxObservation = { kind: 'call', endpointId, callId: event.connection.callId, state, at }
  if (event.cause !== undefined) observation.cause = event.cause
  return { action: 'observe', observation }
}

function legState(event: CstaCallEvent, endpointId: string): CallLegState | 'resnapshot' | undefined {
  const own = event.connection.deviceId === endpointId || subjectDevice(event) === endpointId
  const other = fromLocalConnectionInfo(event.localConnectionInfo)
  switch (event.kind) {
    case 'OriginatedEvent':
    case 'ServiceInitiatedEvent':
      return own ? 'dialing' : other
    case 'DeliveredEvent':
      if (own) return 'alerting'
      // The caller hears ringback: busy for presence, whatever localConnectionInfo says (usually connected).
      if (event.callingDevice === endpointId) return 'dialing'
      return other
    case 'EstablishedEvent':
      if (own) return 'connected'
      if (event.callingDevice === endpointId) return event.localConnectionInfo === 'hold' ? 'held' : 'connected'
      return other
    case 'HeldEvent':
      // Only the holding device's leg is held; the held party stays connected.
      return own ? 'held' : other
    case 'RetrievedEvent':
      return own ? 'connected' : other
    case 'ConnectionClearedEvent':
      if (own) return 'cleared'
      // Another party left. In a conference our leg stays (localConnectionInfo connected/hold); in a two-party
      // call the switch clears the whole call, either with a second event for our connection or by reporting
      // our connection as null here. Without localConnectionInfo we cannot tell the two apart.
      return event.localConnectionInfo === undefined ? 'resnapshot' : other
  }
}

/** The device the event's connection belongs to, by the event's role field. */
function subjectDevice(event: CstaCallEvent): string | undefined {
  switch (event.kind) {
    case 'DeliveredEvent': return event.alertingDevice
    case 'EstablishedEvent': return event.answeringDevice
    case 'ConnectionClearedEvent': return event.releasingDevice
    case 'HeldEvent': return event.holdingDevice
    case 'RetrievedEvent': return event.retrievingDevice
    case 'OriginatedEvent': return event.callingDevice
    case 'ServiceInitiatedEvent': return event.initiatingDevice
  }
}

const LEG_STATE_BY_CONNECTION_STATE: Record<LocalConnectionState, CallLegState> = {
  null: 'cleared',
  initiated: 'dialing',
  alerting: 'alerting',
  // Queued: the call waits at the device (e.g. a hunt group); for presence that is ringing.
  queued: 'alerting',
  connected: 'connected',
  hold: 'held',
  // Fail: the device is off-hook with a busy or error tone; still occupied.
  fail: 'dialing',
}

function fromLocalConnectionInfo(state: LocalConnectionState | undefined): CallLegState | undefined {
  return state === undefined ? undefined : LEG_STATE_BY_CONNECTION_STATE[state]
}

/** A SnapshotDevice answer plus the device's DND flag → the endpoint's complete state. */
export function normaliseSnapshot(endpointId: string, response: SnapshotDeviceResponse, dnd: boolean, at: number): PbxObservation {
  const calls: Array<{ callId: string; state: Exclude<CallLegState, 'cleared'> }> = []
  for (const call of response.calls) {
    const state = LEG_STATE_BY_CONNECTION_STATE[call.localConnectionState]
    if (state !== 'cleared') calls.push({ callId: call.callId, state })
  }
  return { kind: 'snapshot', endpointId, calls, dnd, at }
}
