/**
 * TypeScript shapes of the MTCTI-3 messages in `schema.ts`, as protobufjs hands them over with
 * `{ longs: Number, enums: Number, defaults: false, oneofs: true }`: proto3 leaves default values off the
 * wire, so every scalar may be missing (read 0, "" or false) and `payload` names the oneof case that is set.
 */

export interface RequestResponse { requestid?: number; result?: number; additional?: string }
export interface GeneralCmd { requestid?: number; getversioninfo?: boolean; payload?: 'getversioninfo' }
export interface GeneralData { responseid?: number; versioninfo?: string; payload?: 'versioninfo' }

export interface SubscribeLines { flags?: number }
export interface SubscribeUser { guid?: Uint8Array; flags?: number; ccflags?: number }
export interface Subscribe {
  requestid?: number
  subscribe_id?: number
  timeout?: number
  label?: string
  lines?: SubscribeLines
  user?: SubscribeUser
  payload?: 'lines' | 'user'
}

export interface UpdateUserSac { set?: number }
export interface UpdateUser { sac?: UpdateUserSac }
export interface SubscribeCmd {
  requestid?: number
  subscribe_id?: number
  timeout?: number
  user?: UpdateUser
  payload?: 'timeout' | 'user'
}
export interface SubscribeEnd { requestid?: number; subscribe_id?: number; reason?: string }
export interface SubscribeTerminated { subscribe_id?: number; reason?: string }

export interface LinesUser { guid?: Uint8Array; extn?: string; name?: string }
export interface NotifyLines { flags?: number; adduser?: LinesUser[]; deleteuser?: LinesUser[]; changeuser?: LinesUser[] }
export interface NotifyUser { extn?: string; name?: string; fullname?: string; email?: string; dnd?: boolean }

/** CallInfo.State [C names and numbers]. */
export const CallState = {
  UNKNOWN: 0, DIALTONE: 1, DIALLING: 2, DIALLED: 3, RINGING: 4, RINGBACK: 5, CONNECTED: 6, ONHOLD: 7,
  ONHOLDPENDTRANSFER: 8, ONHOLDPENDCONF: 9, DISCONNECTED: 10, BUSY: 11, FAILED: 12, WAITINGFORACCT: 13,
  WAITINGFORAUTH: 14, WAITINGFORLINE: 15, REMINDER: 16, AFTERCALLWORK: 17, RINGINGDIVERT: 18,
  RINGINGVOICEMAIL: 19, ANSWEREDBYVOICEMAIL: 20, LEAVINGVOICEMAILMESSAGE: 21, QUEUEING: 22, RETARGETING: 23,
} as const
export type CallStateName = keyof typeof CallState
export const CALL_STATE_NAMES: ReadonlyMap<number, CallStateName> = new Map(
  (Object.entries(CallState) as Array<[CallStateName, number]>).map(([name, value]) => [value, name]),
)

/** CallInfo.Direction [C names; I numbers]. */
export const CallDirection = { UNDEFINED: 0, OUTBOUND: 1, INBOUND: 2, PICKUP: 3 } as const

export interface CallInfo {
  callid?: number
  referencecallid?: number
  relatedcallid?: number
  /** A number, possibly one this schema does not name (a newer PBX). */
  state?: number
  direction?: number
  gcid?: Uint8Array
}
export interface CallLost { callid?: number; referencecallid?: number; reason?: number; thisenddropped?: boolean; description?: string }
export interface NotifyCallControl { refreshinstance?: number; callinfo?: CallInfo[]; calllost?: CallLost[] }

export interface Notify {
  subscribe_id?: number
  notify_id?: number
  label?: string
  callcontrol?: NotifyCallControl
  lines?: NotifyLines
  user?: NotifyUser
  payload?: 'callcontrol' | 'lines' | 'user'
}
export interface NotifyAck { subscribe_id?: number; notify_id?: number }

/** The envelope: exactly one member set, named by `payload` (absent when the case is one we do not know). */
export interface MtctiMessage {
  response?: RequestResponse
  generalcmd?: GeneralCmd
  subscribe?: Subscribe
  subscribecmd?: SubscribeCmd
  subscribeend?: SubscribeEnd
  subscribeterminated?: SubscribeTerminated
  generaldata?: GeneralData
  notify?: Notify
  notifyack?: NotifyAck
  payload?: MtctiPayloadCase
}

export type MtctiPayloadCase =
  | 'response' | 'generalcmd' | 'subscribe' | 'subscribecmd' | 'subscribeend' | 'subscribeterminated'
  | 'generaldata' | 'notify' | 'notifyack'

/** What a sender builds: one case, without the `payload` discriminator (protobufjs derives it). */
export type MtctiOutgoing =
  | { response: RequestResponse }
  | { generalcmd: GeneralCmd }
  | { subscribe: Subscribe }
  | { subscribecmd: SubscribeCmd }
  | { subscribeend: SubscribeEnd }
  | { subscribeterminated: SubscribeTerminated }
  | { generaldata: GeneralData }
  | { notify: Notify }
  | { notifyack: NotifyAck }
