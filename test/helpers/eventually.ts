/**
 * Retries an async check until it passes or the deadline ends, then fails with the last reason. For end-to-end
 * outcomes that cross several processes (PBX → gateway → broker → relay → Graph) where no single event says "done".
 */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
