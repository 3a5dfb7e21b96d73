import type { CallLegState } from '../types.js'
import { CALL_STATE_NAMES, CallDirection, CallState, type CallInfo, type CallLost, type NotifyUser } from './mtcti3/model.js'

/**
 * Pure mapping from MTCTI-3 call control and user data to our endpoint model (research A.5, mapping [I]).
 * The research's proposal: ringing = RINGING/RINGINGDIVERT, in call = CONNECTED or outbound dialling states,
 * held = ONHOLD*, idle once the call is lost or DISCONNECTED/FAILED/BUSY. The rest are our reading of the names.
 */

/** What one CallInfo state means for the monitored user's leg; `ignore` leaves the leg as it was. */
export type LegMapping = CallLegState | 'ignore'

export const CALL_STATE_MAPPING: Readonly<Record<number, LegMapping>> = {
  // [U] no state information: keep whatever we knew.
  [CallState.UNKNOWN]: 'ignore',
  // Off-hook with dial tone: the phone is in use.
  [CallState.DIALTONE]: 'dialing',
  [CallState.DIALLING]: 'dialing',
  [CallState.DIALLED]: 'dialing',
  // Inbound ringing at the user's phone. Direction does not change it (see legStateOf).
  [CallState.RINGING]: 'alerting',
  // The user called out and hears ringback: busy for presence.
  [CallState.RINGBACK]: 'dialing',
  [CallState.CONNECTED]: 'connected',
  [CallState.ONHOLD]: 'held',
  [CallState.ONHOLDPENDTRANSFER]: 'held',
  [CallState.ONHOLDPENDCONF]: 'held',
  // [I] the far end went away: the call is over for presence even if the handset is still lifted.
  [CallState.DISCONNECTED]: 'cleared',
  [CallState.BUSY]: 'cleared',
  [CallState.FAILED]: 'cleared',
  // [I] account / authorisation code prompts and waiting for a trunk happen while dialling.
  [CallState.WAITINGFORACCT]: 'dialing',
  [CallState.WAITINGFORAUTH]: 'dialing',
  [CallState.WAITINGFORLINE]: 'dialing',
  // [I] a held or parked call ringing back at the phone.
  [CallState.REMINDER]: 'alerting',
  // [I] after-call work is an agent state after the call ended, not a call.
  [CallState.AFTERCALLWORK]: 'cleared',
  [CallState.RINGINGDIVERT]: 'alerting',
  // [I] the call left the user's phone for voicemail: the user is no longer part of it.
  [CallState.RINGINGVOICEMAIL]: 'cleared',
  [CallState.ANSWEREDBYVOICEMAIL]: 'cleared',
  [CallState.LEAVINGVOICEMAILMESSAGE]: 'cleared',
  // [I] queued at the user (e.g. call waiting on a busy line): presented, like CSTA "queued".
  [CallState.QUEUEING]: 'alerting',
  // [U] the PBX is moving the call to another target: keep the leg until it says more.
  [CallState.RETARGETING]: 'ignore',
}

export type CallOutcome =
  | { action: 'state'; callId: string; state: CallLegState; stateName: string }
  | { action: 'ignore'; callId: string | undefined; reason: string }

/** One CallInfo → the leg state of the subscribed user. Unknown numbers (a newer PBX) are ignored with a reason. */
export function legStateOf(info: CallInfo): CallOutcome {
  const callId = info.callid === undefined ? undefined : String(info.callid)
  // proto3 leaves 0 off the wire, so a missing callid is call 0: possible but suspicious [I]; accepted.
  const id = callId ?? '0'
  const state = info.state ?? CallState.UNKNOWN
  const name = CALL_STATE_NAMES.get(state)
  const mapped = CALL_STATE_MAPPING[state]
  if (name === undefined || mapped === undefined) return { action: 'ignore', callId: id, reason: `unknown CallInfo state ${state}` }
  if (mapped === 'ignore') return { action: 'ignore', callId: id, reason: `CallInfo state ${name} does not change the leg` }
  // RINGING on an outbound call would be the far end ringing; the PBX reports that as RINGBACK, but if it ever
  // says RINGING/OUTBOUND we still treat the user as busy (dialing) rather than ringing [I].
  if (mapped === 'alerting' && state === CallState.RINGING && info.direction === CallDirection.OUTBOUND) {
    return { action: 'state', callId: id, state: 'dialing', stateName: `${name}/OUTBOUND` }
  }
  return { action: 'state', callId: id, state: mapped, stateName: name }
}

/** A CallLost ends the call for this user; the description (or reason number) becomes the cause. */
export function lostCall(lost: CallLost): { callId: string; cause: string | undefined } {
  const description = lost.description?.trim()
  const cause = description !== undefined && description !== '' ? description : lost.reason !== undefined && lost.reason !== 0 ? `reason ${lost.reason}` : undefined
  return { callId: String(lost.callid ?? 0), cause }
}

/** What we know of one user from NotifyUser. */
export interface UserData {
  extension: string | undefined
  name: string | undefined
  fullName: string | undefined
  email: string | undefined
  dnd: boolean
}

/**
 * Applies one NotifyUser. [U] whether IP Office sends the full user each time or only changes. proto3 cannot
 * tell "dnd false" from "dnd not sent", so we take a NotifyUser that carries the extension as the full state
 * (missing dnd = off, missing e-mail = none) and one without it as a partial update that only sets what it
 * carries (a DND switched off cannot be seen in such a message; the next full one shows it). [I]
 */
export function applyNotifyUser(previous: UserData | undefined, notify: NotifyUser): { data: UserData; full: boolean } {
  const full = notify.extn !== undefined && notify.extn !== ''
  if (full || previous === undefined) {
    return {
      full: true,
      data: {
        extension: emptyToUndefined(notify.extn),
        name: emptyToUndefined(notify.name),
        fullName: emptyToUndefined(notify.fullname),
        email: emptyToUndefined(notify.email),
        dnd: notify.dnd === true,
      },
    }
  }
  return {
    full: false,
    data: {
      extension: previous.extension,
      name: emptyToUndefined(notify.name) ?? previous.name,
      fullName: emptyToUndefined(notify.fullname) ?? previous.fullName,
      email: emptyToUndefined(notify.email) ?? previous.email,
      dnd: notify.dnd === true ? true : previous.dnd,
    },
  }
}

const EMAIL = /^[^@\s]+@[^@\s]+$/

/** The directory entry for one user; an e-mail that does not look like one is left out rather than sent. */
export function directoryEntry(extension: string, linesName: string | undefined, data: UserData | undefined): { endpointId: string; name: string; email?: string } {
  const name = (data?.fullName ?? data?.name ?? linesName ?? extension).slice(0, 256)
  const email = data?.email
  return email !== undefined && EMAIL.test(email) && email.length <= 320 ? { endpointId: extension, name, email } : { endpointId: extension, name }
}

function emptyToUndefined(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}
