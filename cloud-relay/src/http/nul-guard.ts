/**
 * PostgreSQL text cannot hold a NUL character: a `\u0000` in a JSON body, or `%00` in a path or query, reached the
 * store and came back as a 500 (found by the console-http fuzz target in a gateway's revoke reason). No field of
 * the API has a use for it, so every request carrying one is refused before its route runs, whatever the route.
 */

/** Where the first NUL sits (e.g. `body.reason`, `params.tenantId`, a key name), or undefined when there is none. */
export function findNul(value: unknown, path: string): string | undefined {
  // A work list, not recursion: bodies are bounded in size (bodyLimit), not in nesting, and a NUL at any depth counts.
  const pending: Array<[unknown, string]> = [[value, path]]
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    const [current, where] = item
    if (typeof current === 'string') {
      if (current.includes('\u0000')) return where
    } else if (Array.isArray(current)) {
      for (let i = current.length - 1; i >= 0; i--) pending.push([current[i], `${where}[${i}]`])
    } else if (current !== null && typeof current === 'object') {
      const entries = Object.entries(current)
      for (const [key] of entries) if (key.includes('\u0000')) return `${where} (a field name)`
      for (let i = entries.length - 1; i >= 0; i--) pending.push([entries[i]![1], `${where}.${entries[i]![0]}`])
    }
  }
  return undefined
}

/** The message for a refused request: which part carried the NUL, and what to do. */
export function nulMessage(where: string): string {
  return `The request holds a NUL character (\\u0000) in ${where}, which no field of the relay takes: remove it and send again; nothing was changed.`
}
