/**
 * PostgreSQL text cannot hold a NUL character: a `\u0000` in a JSON body, or `%00` in a path or query, reached the
 * store and came back as a 500 (found by the console-http fuzz target in a gateway's revoke reason). No field of
 * the API has a use for it, so every request carrying one is refused before its route runs, whatever the route.
 */

/** Where the first NUL sits (e.g. `body.reason`, `params.tenantId`, a key name), or undefined when there is none. */
export function findNul(value: unknown, path: string, depth = 0): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? path : undefined
  // Bodies are bounded in size and nesting before they get here; the depth cap only keeps this walk finite.
  if (value === null || typeof value !== 'object' || depth > 64) return undefined
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findNul(value[i], `${path}[${i}]`, depth + 1)
      if (found !== undefined) return found
    }
    return undefined
  }
  for (const [key, inner] of Object.entries(value)) {
    if (key.includes('\u0000')) return `${path} (a field name)`
    const found = findNul(inner, `${path}.${key}`, depth + 1)
    if (found !== undefined) return found
  }
  return undefined
}

/** The message for a refused request: which part carried the NUL, and what to do. */
export function nulMessage(where: string): string {
  return `The request holds a NUL character (\\u0000) in ${where}, which no field of the relay takes: remove it and send again; nothing was changed.`
}
