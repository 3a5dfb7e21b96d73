/** The codes the kit itself raises (link session, pending requests) and every driver shares. */
export type SessionErrorCode = 'NOT_OPEN' | 'LINK_CLOSED' | 'REQUEST_TIMEOUT'

/**
 * Why a PBX link or one request on it failed: a stable code the adapter turns into the installer's words and
 * AdapterError codes, and details (errno, status, request, …). Each driver names its own subclass and codes.
 */
export class LinkError<Code extends string, Detail extends object> extends Error {
  readonly detail: Detail

  constructor(readonly code: Code, message: string, detail?: Detail) {
    super(message)
    this.name = new.target.name
    // Every driver's detail type has only optional fields, so "no detail" is an empty one.
    this.detail = detail ?? ({} as Detail)
  }
}
