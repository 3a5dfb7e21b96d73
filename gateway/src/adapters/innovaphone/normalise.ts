import type { CallLegState } from '../types.js'
import type { PresenceItem, UserRow } from './messages.js'

/**
 * Pure mappings from innovaphone data to our model (research B.3-B.5). The RCC call state is PBX-centric
 * [C]: a call from the PBX to the phone counts as outbound (0x80), so a call ringing at the person's phone is
 * 0x84 and answered 0x85.
 */

/** Low nibble of CallInfo.state [C: SOAP CallInfo, RCC CallAdd]. */
export const CALL_STATE = { setup: 1, setupAck: 2, callProc: 3, alert: 4, connect: 5, discSent: 6, discReceived: 7, parked: 8 } as const
/** The PBX sends to the phone: an incoming call for the person [C, PBX-centric]. */
export const TOWARDS_PHONE = 0x80
/** Held by the person [C]. */
export const HELD_LOCAL = 0x100
/** Held by the other party [C]. */
export const HELD_BY_PEER = 0x200

export type CallInfoOutcome =
  | { action: 'state'; state: CallLegState }
  /** Nothing changes for presence (disconnect in progress, unknown nibble); `reason` is for debug logs. */
  | { action: 'ignore'; reason: string }

/**
 * One CallInfo → the leg state of the monitored person.
 * - `del` always ends the call [C: "there is ALWAYS a del event"].
 * - 0x100 → held. 0x200 alone → connected: the person is still in the call while the other side holds it,
 *   as the OSBiz adapter treats the held party (research B.4 proposes held for both [I]).
 * - nibble 4 towards the phone (0x84) → alerting; nibble 4 from the phone (0x04) is the far end ringing while
 *   the person hears ringback → dialing (the person is busy) [I].
 * - nibble 1-3: towards the phone the call is being offered → alerting; from the phone → dialing [I].
 * - nibble 5 → connected; 8 parked → held [I]; 6/7 disconnect in progress → no change until `del` [I].
 */
export function callInfoOutcome(state: number | undefined, msg: string | undefined): CallInfoOutcome {
  if (msg === 'del') return { action: 'state', state: 'cleared' }
  if (state === undefined) return { action: 'ignore', reason: `CallInfo ${msg ?? ''} without state` }
  const nibble = state & 0x0f
  const towardsPhone = (state & TOWARDS_PHONE) !== 0
  if (nibble === CALL_STATE.discSent || nibble === CALL_STATE.discReceived) return { action: 'ignore', reason: 'disconnect in progress; del ends the call' }
  if ((state & HELD_LOCAL) !== 0 && nibble !== 0) return { action: 'state', state: 'held' }
  switch (nibble) {
    case CALL_STATE.setup:
    case CALL_STATE.setupAck:
    case CALL_STATE.callProc:
      return { action: 'state', state: towardsPhone ? 'alerting' : 'dialing' }
    case CALL_STATE.alert:
      return { action: 'state', state: towardsPhone ? 'alerting' : 'dialing' }
    case CALL_STATE.connect:
      return { action: 'state', state: 'connected' }
    case CALL_STATE.parked:
      return { action: 'state', state: 'held' }
    default:
      return { action: 'ignore', reason: `unknown call state 0x${state.toString(16)}` }
  }
}

/** Primary e-mail [C, SOAP UserInfo doc]: the h323 name when h323-email is set, else the first of emails[]. */
export function primaryEmail(row: Pick<UserRow, 'h323' | 'h323-email' | 'emails'>): string | undefined {
  const candidate = row['h323-email'] === true ? row.h323 : row.emails?.find((entry) => typeof entry.email === 'string' && entry.email !== '')?.email
  return candidate !== undefined && /^[^@\s]+@[^@\s]+$/.test(candidate) && candidate.length <= 320 ? candidate : undefined
}

/** The contact of presence the person sets (phone, myApps) and we set [C: "tel:" = set by the user]. */
export const USER_CONTACT = 'tel:'

/**
 * DND from a PresenceUpdate: the `tel:` item's activity is "dnd" [C]. Calendar (`calendar:`) and PBX online
 * state (`im:`) items do not count [I]: a calendar entry is not the person pressing DND.
 */
export function dndFromPresence(items: readonly PresenceItem[]): boolean {
  const own = items.find((item) => item.contact === USER_CONTACT)
  return own?.activity === 'dnd'
}

/** Display name: the directory name (dn) when set, else the Long Name (cn). */
export function displayName(row: { dn?: string; cn?: string; h323?: string }): string {
  const name = row.dn !== undefined && row.dn !== '' ? row.dn : row.cn !== undefined && row.cn !== '' ? row.cn : row.h323 ?? ''
  return name.slice(0, 256)
}
