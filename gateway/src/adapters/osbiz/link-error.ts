import { LinkError } from '../kit/link-error.js'

/** Why a CSTA request or the link itself failed, with a stable code the adapter maps to AdapterError codes. */
export type CstaLinkErrorCode =
  /** TCP connect refused (nothing listening, link disabled, or no free link). */
  | 'CONNECT_REFUSED'
  | 'CONNECT_TIMEOUT'
  /** Any other socket error before the session started (DNS, unreachable, reset). */
  | 'CONNECT_FAILED'
  /** TCP connected, then the switch closed it before answering StartApplicationSession. */
  | 'CLOSED_BEFORE_SESSION'
  | 'SESSION_REJECTED'
  | 'SESSION_TIMEOUT'
  | 'REQUEST_TIMEOUT'
  /** The switch answered with CSTAErrorCode (or an ECMA-354 negative response). */
  | 'CSTA_ERROR'
  | 'UNEXPECTED_RESPONSE'
  | 'MALFORMED_RESPONSE'
  | 'ENCODE_FAILED'
  /** The request was made while no session was open. */
  | 'NOT_OPEN'
  /** The link went down (or was closed by us) while the request was outstanding. */
  | 'LINK_CLOSED'
  | 'TOO_MANY_REQUESTS'

export interface CstaLinkErrorDetail {
  /** Node's socket error code (ECONNREFUSED, ...). */
  errno?: string
  /** CSTAErrorCode category and value, or the ECMA-354 errorCode as value with category "session". */
  category?: string
  value?: string
  invokeId?: number
  request?: string
}

export class CstaLinkError extends LinkError<CstaLinkErrorCode, CstaLinkErrorDetail> {}
