/**
 * Checks on raw request parts that run before any route: the Host header, JSON nesting, the session cookie.
 * Pure functions, so each is tested with the server and readable on its own.
 */

/** Nesting the setup API's bodies never need (a connector with its user list is 4 deep). */
export const MAX_JSON_DEPTH = 32

/**
 * True when a JSON text nests objects or arrays deeper than `max`, found by one pass over the characters without
 * parsing: a 100,000-deep body must be refused before JSON.parse or a recursive validator walks it.
 */
export function jsonDepthExceeds(text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
      continue
    }
    if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return false
}

/** The host name of a Host header, lower case, without port or IPv6 brackets; undefined when malformed. */
export function hostNameOf(header: string | undefined): string | undefined {
  if (!header || header.length > 300) return undefined
  const value = header.trim().toLowerCase()
  if (value.startsWith('[')) {
    const end = value.indexOf(']')
    return end > 1 ? value.slice(1, end) : undefined
  }
  const name = value.split(':')[0]
  return name && /^[a-z0-9.-]+$/.test(name) ? name : undefined
}

/**
 * A cookie's value from the Cookie header, or undefined. Never throws: values are used as they are sent (session
 * ids are base64url, nothing to decode), so `=%` or any other malformed percent-encoding is simply no session.
 */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined
  }
  return undefined
}
