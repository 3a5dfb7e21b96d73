import { createHash, timingSafeEqual } from 'node:crypto'
import { HttpError } from './errors.js'

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest()

/**
 * Checks `Authorization: Bearer <token>` against the configured API token in constant time (both sides are hashed
 * first, so neither the content nor the length of the token leaks through timing). Throws an HttpError otherwise.
 *
 * A stopgap: one shared token for the whole admin API until the cloud console gets its own login (a later issue).
 */
export function createBearerCheck(apiToken: string | undefined): (authorization: string | undefined) => void {
  const expected = apiToken === undefined ? undefined : digest(apiToken)
  return (authorization) => {
    if (!expected) {
      throw new HttpError('HTTP_API_NOT_CONFIGURED', 'The admin API is disabled because no API token is configured: set http.apiToken (at least 32 characters, e.g. from "openssl rand -base64 32") in the relay config and restart the relay.')
    }
    if (!authorization) {
      throw new HttpError('HTTP_UNAUTHORIZED', 'Missing Authorization header: send "Authorization: Bearer <token>" with the relay\'s http.apiToken.')
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization)
    if (!match) {
      throw new HttpError('HTTP_UNAUTHORIZED', 'The Authorization header is not a bearer token: send "Authorization: Bearer <token>" with the relay\'s http.apiToken.')
    }
    if (!timingSafeEqual(digest(match[1]!), expected)) {
      throw new HttpError('HTTP_UNAUTHORIZED', 'The bearer token is not valid: use the relay\'s current http.apiToken.')
    }
  }
}
