/**
 * The CSTA Phase III messages this connector speaks, independent of the wire encoding (ECMA-323 XML today,
 * ECMA-285 BER later). `kind` is the CSTA/ECMA-354 message name. Device ids are already normalised to the
 * dialing number (extension) by the codec. Durations are in seconds, as on the wire.
 */

/** ECMA-269 LocalConnectionState: the state of one device's connection to a call. */
export type LocalConnectionState = 'null' | 'initiated' | 'alerting' | 'connected' | 'hold' | 'queued' | 'fail'

export const LOCAL_CONNECTION_STATES: readonly LocalConnectionState[] = [
  'null', 'initiated', 'alerting', 'connected', 'hold', 'queued', 'fail',
]

/** A ConnectionID: one device's participation in one call. */
export interface CstaConnection {
  callId: string
  deviceId?: string
}

// --- ECMA-354 application session -------------------------------------------------------------------------

export interface StartApplicationSession {
  kind: 'StartApplicationSession'
  applicationId: string
  username?: string
  password?: string
  /** ECMA-323 namespace URI of the requested edition. */
  protocolVersion?: string
  /** Absent: the switch picks. */
  requestedSessionDurationS?: number
}

export interface StartApplicationSessionPosResponse {
  kind: 'StartApplicationSessionPosResponse'
  sessionId: string
  protocolVersion?: string
  actualSessionDurationS?: number
}

export interface StartApplicationSessionNegResponse {
  kind: 'StartApplicationSessionNegResponse'
  /** e.g. invalidApplicationInfo, requestedProtocolVersionNotSupported. */
  errorCode: string
}

export interface ResetApplicationSessionTimer {
  kind: 'ResetApplicationSessionTimer'
  sessionId: string
  requestedSessionDurationS?: number
}

export interface ResetApplicationSessionTimerPosResponse {
  kind: 'ResetApplicationSessionTimerPosResponse'
  actualSessionDurationS?: number
}

export interface ResetApplicationSessionTimerNegResponse {
  kind: 'ResetApplicationSessionTimerNegResponse'
  errorCode: string
}

export interface StopApplicationSession {
  kind: 'StopApplicationSession'
  sessionId: string
  /** ECMA-354 definedEndReason, e.g. normal. */
  reason: string
}

export interface StopApplicationSessionPosResponse {
  kind: 'StopApplicationSessionPosResponse'
}

// --- System status ----------------------------------------------------------------------------------------

/** Sent by the switch; the client must answer with SystemStatusResponse under the same invokeID. */
export interface SystemStatus {
  kind: 'SystemStatus'
  /** e.g. normal, initializing, messagesLost, disabled, overloadImminent. */
  systemStatus: string
}

export interface SystemStatusResponse {
  kind: 'SystemStatusResponse'
}

export interface RequestSystemStatus {
  kind: 'RequestSystemStatus'
}

export interface RequestSystemStatusResponse {
  kind: 'RequestSystemStatusResponse'
  systemStatus: string
}

// --- Monitoring, snapshot, DND ----------------------------------------------------------------------------

export interface MonitorStart {
  kind: 'MonitorStart'
  device: string
}

export interface MonitorStartResponse {
  kind: 'MonitorStartResponse'
  monitorCrossRefId: string
}

export interface MonitorStop {
  kind: 'MonitorStop'
  monitorCrossRefId: string
}

export interface MonitorStopResponse {
  kind: 'MonitorStopResponse'
}

export interface SnapshotDevice {
  kind: 'SnapshotDevice'
  device: string
}

export interface SnapshotCall {
  callId: string
  deviceId?: string
  localConnectionState: LocalConnectionState
}

export interface SnapshotDeviceResponse {
  kind: 'SnapshotDeviceResponse'
  calls: SnapshotCall[]
}

export interface GetDoNotDisturb {
  kind: 'GetDoNotDisturb'
  device: string
}

export interface GetDoNotDisturbResponse {
  kind: 'GetDoNotDisturbResponse'
  doNotDisturbOn: boolean
}

export interface SetDoNotDisturb {
  kind: 'SetDoNotDisturb'
  device: string
  doNotDisturbOn: boolean
}

export interface SetDoNotDisturbResponse {
  kind: 'SetDoNotDisturbResponse'
}

// --- Events (switch → client, invokeID 9999 in the XML framing) -------------------------------------------

interface CallEventBase {
  monitorCrossRefId: string
  /** The connection the event is about (ECMA names it per event: droppedConnection, heldConnection, ...). */
  connection: CstaConnection
  /** The monitored device's own connection state after the event, when the switch reports it. */
  localConnectionInfo?: LocalConnectionState
  /** ECMA-269 EventCause, e.g. newCall, normalClearing. */
  cause?: string
}

export interface DeliveredEvent extends CallEventBase {
  kind: 'DeliveredEvent'
  alertingDevice?: string
  callingDevice?: string
  calledDevice?: string
}

export interface EstablishedEvent extends CallEventBase {
  kind: 'EstablishedEvent'
  answeringDevice?: string
  callingDevice?: string
  calledDevice?: string
}

export interface ConnectionClearedEvent extends CallEventBase {
  kind: 'ConnectionClearedEvent'
  releasingDevice?: string
}

export interface HeldEvent extends CallEventBase {
  kind: 'HeldEvent'
  holdingDevice?: string
}

export interface RetrievedEvent extends CallEventBase {
  kind: 'RetrievedEvent'
  retrievingDevice?: string
}

export interface OriginatedEvent extends CallEventBase {
  kind: 'OriginatedEvent'
  callingDevice?: string
  calledDevice?: string
}

export interface ServiceInitiatedEvent extends CallEventBase {
  kind: 'ServiceInitiatedEvent'
  initiatingDevice?: string
}

export interface DoNotDisturbEvent {
  kind: 'DoNotDisturbEvent'
  monitorCrossRefId: string
  device?: string
  doNotDisturbOn: boolean
}

// --- Errors and the unknown -------------------------------------------------------------------------------

/** ECMA-285 UniversalFailure: `category` is e.g. operation, systemResourceAvailability; `value` the failure. */
export interface CSTAErrorCode {
  kind: 'CSTAErrorCode'
  category: string
  value: string
}

/** A well-formed message this model does not know. Logged and counted, never fatal. */
export interface UnknownMessage {
  kind: 'Unknown'
  element: string
}

export type CstaCallEvent =
  | DeliveredEvent
  | EstablishedEvent
  | ConnectionClearedEvent
  | HeldEvent
  | RetrievedEvent
  | OriginatedEvent
  | ServiceInitiatedEvent

export type CstaEvent = CstaCallEvent | DoNotDisturbEvent

export type CstaMessage =
  | StartApplicationSession
  | StartApplicationSessionPosResponse
  | StartApplicationSessionNegResponse
  | ResetApplicationSessionTimer
  | ResetApplicationSessionTimerPosResponse
  | ResetApplicationSessionTimerNegResponse
  | StopApplicationSession
  | StopApplicationSessionPosResponse
  | SystemStatus
  | SystemStatusResponse
  | RequestSystemStatus
  | RequestSystemStatusResponse
  | MonitorStart
  | MonitorStartResponse
  | MonitorStop
  | MonitorStopResponse
  | SnapshotDevice
  | SnapshotDeviceResponse
  | GetDoNotDisturb
  | GetDoNotDisturbResponse
  | SetDoNotDisturb
  | SetDoNotDisturbResponse
  | CstaEvent
  | CSTAErrorCode
  | UnknownMessage

export type CstaKind = CstaMessage['kind']
export type CstaMessageOf<K extends CstaKind> = Extract<CstaMessage, { kind: K }>

/** Client requests and the positive response each one expects. */
export interface CstaResponseMap {
  StartApplicationSession: StartApplicationSessionPosResponse
  ResetApplicationSessionTimer: ResetApplicationSessionTimerPosResponse
  StopApplicationSession: StopApplicationSessionPosResponse
  RequestSystemStatus: RequestSystemStatusResponse
  MonitorStart: MonitorStartResponse
  MonitorStop: MonitorStopResponse
  SnapshotDevice: SnapshotDeviceResponse
  GetDoNotDisturb: GetDoNotDisturbResponse
  SetDoNotDisturb: SetDoNotDisturbResponse
}

/** Client requests by kind (a map rather than Extract<>, so generic code can index it). */
export interface CstaRequestMap {
  StartApplicationSession: StartApplicationSession
  ResetApplicationSessionTimer: ResetApplicationSessionTimer
  StopApplicationSession: StopApplicationSession
  RequestSystemStatus: RequestSystemStatus
  MonitorStart: MonitorStart
  MonitorStop: MonitorStop
  SnapshotDevice: SnapshotDevice
  GetDoNotDisturb: GetDoNotDisturb
  SetDoNotDisturb: SetDoNotDisturb
}

export type CstaRequestKind = keyof CstaResponseMap & keyof CstaRequestMap
export type CstaRequest = CstaRequestMap[CstaRequestKind]

export const RESPONSE_KIND: { readonly [K in CstaRequestKind]: CstaResponseMap[K]['kind'] } = {
  StartApplicationSession: 'StartApplicationSessionPosResponse',
  ResetApplicationSessionTimer: 'ResetApplicationSessionTimerPosResponse',
  StopApplicationSession: 'StopApplicationSessionPosResponse',
  RequestSystemStatus: 'RequestSystemStatusResponse',
  MonitorStart: 'MonitorStartResponse',
  MonitorStop: 'MonitorStopResponse',
  SnapshotDevice: 'SnapshotDeviceResponse',
  GetDoNotDisturb: 'GetDoNotDisturbResponse',
  SetDoNotDisturb: 'SetDoNotDisturbResponse',
}

const CALL_EVENT_KINDS = new Set<CstaKind>([
  'DeliveredEvent', 'EstablishedEvent', 'ConnectionClearedEvent', 'HeldEvent', 'RetrievedEvent',
  'OriginatedEvent', 'ServiceInitiatedEvent',
])

const NEGATIVE_RESPONSE_KINDS = new Set<CstaKind>([
  'StartApplicationSessionNegResponse', 'ResetApplicationSessionTimerNegResponse', 'CSTAErrorCode',
])

const POSITIVE_RESPONSE_KINDS = new Set<CstaKind>([...Object.values(RESPONSE_KIND), 'SystemStatusResponse'])

export function isEvent(message: CstaMessage): message is CstaEvent {
  return CALL_EVENT_KINDS.has(message.kind) || message.kind === 'DoNotDisturbEvent'
}

/** Messages that answer a request (positively or negatively) and so carry the request's invokeID. */
export function isResponse(message: CstaMessage): boolean {
  return POSITIVE_RESPONSE_KINDS.has(message.kind) || NEGATIVE_RESPONSE_KINDS.has(message.kind)
}

export function isNegativeResponse(
  message: CstaMessage,
): message is StartApplicationSessionNegResponse | ResetApplicationSessionTimerNegResponse | CSTAErrorCode {
  return NEGATIVE_RESPONSE_KINDS.has(message.kind)
}
