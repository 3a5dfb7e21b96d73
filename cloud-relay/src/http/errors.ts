import { Type, type Static } from '@sinclair/typebox'

/**
 * The admin API's error catalogue. Codes are stable (clients and the console switch on them); messages are for
 * people and say what to do.
 */
export const HTTP_ERROR_STATUS = {
  HTTP_BAD_REQUEST: 400,
  HTTP_UNAUTHORIZED: 401,
  HTTP_FORBIDDEN: 403,
  HTTP_NOT_FOUND: 404,
  HTTP_CONFLICT: 409,
  HTTP_PAYLOAD_TOO_LARGE: 413,
  HTTP_RANGE: 416,
  HTTP_INTERNAL: 500,
  HTTP_API_NOT_CONFIGURED: 503,
  HTTP_UNAVAILABLE: 503,
} as const

export type HttpErrorCode = keyof typeof HTTP_ERROR_STATUS

export const ErrorBodySchema = Type.Object({
  error: Type.Object({
    code: Type.String({ description: 'Stable error code, e.g. HTTP_BAD_REQUEST' }),
    message: Type.String({ description: 'What went wrong and what to do' }),
  }, { additionalProperties: false }),
}, { additionalProperties: false, description: 'Every error answer has this shape' })

export type ErrorBody = Static<typeof ErrorBodySchema>

/** Thrown by handlers and hooks; the error handler turns it into `{ error: { code, message } }`. */
export class HttpError extends Error {
  readonly statusCode: number

  constructor(readonly code: HttpErrorCode, message: string) {
    super(message)
    this.name = 'HttpError'
    this.statusCode = HTTP_ERROR_STATUS[code]
  }
}

export function errorBody(code: HttpErrorCode, message: string): ErrorBody {
  return { error: { code, message } }
}
