/** The console's error catalogue (stable codes; messages say what to do). The relay's error handler sends them. */
export const CONSOLE_ERROR_STATUS = {
  CONSOLE_INVALID: 400,
  CONSOLE_NOT_SIGNED_IN: 401,
  CONSOLE_BAD_LOGIN: 401,
  CONSOLE_SETUP_SECRET: 401,
  CONSOLE_CSRF: 403,
  CONSOLE_FORBIDDEN: 403,
  CONSOLE_NOT_FOUND: 404,
  CONSOLE_CONFLICT: 409,
  CONSOLE_RATE_LIMITED: 429,
} as const

export type ConsoleErrorCode = keyof typeof CONSOLE_ERROR_STATUS

export class ConsoleError extends Error {
  readonly statusCode: number

  constructor(readonly code: ConsoleErrorCode, message: string, readonly retryAfterS?: number) {
    super(message)
    this.name = 'ConsoleError'
    this.statusCode = CONSOLE_ERROR_STATUS[code]
  }
}
