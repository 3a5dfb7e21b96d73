import type { ErrorBody } from './schemas.js'

/** An error the setup API answers with its status, a stable code and a message in words (and the form field). */
export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly field?: string, readonly retryAfterS?: number) {
    super(message)
  }
}

export const errorBody = (code: string, message: string, field?: string): ErrorBody => ({ error: { code, message, ...(field ? { field } : {}) } })
