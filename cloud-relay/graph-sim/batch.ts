/**
 * JSON batching (`POST /v1.0/$batch`) as research/graph-presence.md §4 describes it: at most 20 requests,
 * unique ids (a duplicate fails the whole batch with 400), relative urls, `Content-Type` in `headers` whenever a
 * body is present, `dependsOn` sequencing with 424 for a failed dependency, responses in any order, and the
 * outer status 200 even when inner requests fail. The batch only parses and sequences: each inner request is
 * dispatched through the simulator's own routes (authentication, roles, throttling, faults), so it behaves
 * exactly like the same request sent alone, and is counted as its own Graph request.
 */
import { isRecord } from './wire-format.js'

/** Graph's documented limit of requests per batch (§4). */
export const MAX_BATCH_REQUESTS = 20

export interface BatchItem {
  id: string
  method: string
  /** Relative to the version segment, e.g. /users/{id}/presence/setPresence. */
  url: string
  headers: Record<string, string>
  body: unknown
  dependsOn: readonly string[]
}

export interface InnerResponse {
  status: number
  headers: Record<string, string>
  body: unknown
}

export interface BatchResponseItem extends InnerResponse {
  id: string
}

export interface BatchContext {
  /** Runs one inner request through the simulator's routes, as the batch's caller. */
  dispatch(item: BatchItem): Promise<InnerResponse>
  /** A Graph error body (code, message, innerError) for responses the batch itself makes (424). */
  errorBody(code: string, message: string): unknown
}

export type BatchParse = { ok: true; items: BatchItem[] } | { ok: false; message: string }

/** Validates the whole envelope before anything runs: any violation fails the batch with 400. */
export function parseBatch(body: unknown): BatchParse {
  const requests = isRecord(body) ? body['requests'] : undefined
  if (!Array.isArray(requests)) return { ok: false, message: "The batch body must be a JSON object with a 'requests' array." }
  if (requests.length === 0) return { ok: false, message: 'The batch contains no requests.' }
  if (requests.length > MAX_BATCH_REQUESTS) {
    return { ok: false, message: `The batch contains ${requests.length} requests; the limit is ${MAX_BATCH_REQUESTS} per batch. Split it into several batches.` }
  }
  const items: BatchItem[] = []
  const ids = new Set<string>()
  for (const [index, raw] of requests.entries()) {
    if (!isRecord(raw)) return { ok: false, message: `Request #${index} is not a JSON object.` }
    const { id, method, url, headers, body: itemBody, dependsOn } = raw
    if (typeof id !== 'string' || id === '') return { ok: false, message: `Request #${index} has no 'id'.` }
    if (ids.has(id.toLowerCase())) return { ok: false, message: `Request id '${id}' is used more than once; ids must be unique within a batch.` }
    ids.add(id.toLowerCase())
    if (typeof method !== 'string' || !/^(GET|POST|PATCH|PUT|DELETE)$/i.test(method)) {
      return { ok: false, message: `Request '${id}' has an invalid 'method' (${String(method)}).` }
    }
    if (typeof url !== 'string' || url === '') return { ok: false, message: `Request '${id}' has no 'url'.` }
    if (/^[a-z]+:\/\//i.test(url)) return { ok: false, message: `Request '${id}': the url must be relative (e.g. /users/{id}), not '${url}'.` }
    const headerMap: Record<string, string> = {}
    if (headers !== undefined) {
      if (!isRecord(headers)) return { ok: false, message: `Request '${id}': 'headers' must be an object.` }
      for (const [name, value] of Object.entries(headers)) {
        if (typeof value !== 'string') return { ok: false, message: `Request '${id}': header '${name}' must be a string.` }
        headerMap[name.toLowerCase()] = value
      }
    }
    if (itemBody !== undefined && headerMap['content-type'] === undefined) {
      return { ok: false, message: `Request '${id}' has a body but no Content-Type header; add "headers": {"Content-Type": "application/json"}.` }
    }
    let deps: string[] = []
    if (dependsOn !== undefined) {
      if (!Array.isArray(dependsOn) || !dependsOn.every((d): d is string => typeof d === 'string')) {
        return { ok: false, message: `Request '${id}': 'dependsOn' must be an array of request ids.` }
      }
      deps = dependsOn
    }
    items.push({ id, method: method.toUpperCase(), url: url.startsWith('/') ? url : `/${url}`, headers: headerMap, body: itemBody, dependsOn: deps })
  }
  const byId = new Map(items.map((item) => [item.id.toLowerCase(), item]))
  for (const item of items) {
    for (const dep of item.dependsOn) {
      if (!byId.has(dep.toLowerCase())) return { ok: false, message: `Request '${item.id}' depends on '${dep}', which is not in the batch.` }
    }
  }
  // A cycle would wait forever.
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (item: BatchItem): boolean => {
    const key = item.id.toLowerCase()
    if (state.get(key) === 'done') return true
    if (state.get(key) === 'visiting') return false
    state.set(key, 'visiting')
    for (const dep of item.dependsOn) if (!visit(byId.get(dep.toLowerCase()) as BatchItem)) return false
    state.set(key, 'done')
    return true
  }
  for (const item of items) if (!visit(item)) return { ok: false, message: `The dependsOn chain of request '${item.id}' is circular.` }
  return { ok: true, items }
}

/** Runs the items: independent ones in parallel, each after its dependencies; a failed dependency ⇒ 424. */
export async function runBatch(items: readonly BatchItem[], ctx: BatchContext): Promise<BatchResponseItem[]> {
  const responses: BatchResponseItem[] = []
  const running = new Map<string, Promise<InnerResponse>>()
  const run = (item: BatchItem): Promise<InnerResponse> => {
    const key = item.id.toLowerCase()
    const existing = running.get(key)
    if (existing !== undefined) return existing
    const started = (async (): Promise<InnerResponse> => {
      const deps = await Promise.all(
        item.dependsOn.map(async (dep) => {
          const depItem = items.find((i) => i.id.toLowerCase() === dep.toLowerCase()) as BatchItem
          return { id: depItem.id, response: await run(depItem) }
        }),
      )
      const failed = deps.find((d) => d.response.status >= 400)
      const response: InnerResponse =
        failed === undefined
          ? await ctx.dispatch(item)
          : {
              status: 424,
              headers: { 'content-type': 'application/json' },
              body: ctx.errorBody('FailedDependency', `The request it depends on ('${failed.id}') failed with status ${failed.response.status}.`),
            }
      // Completion order: Graph documents that responses may come in any order.
      responses.push({ id: item.id, ...response })
      return response
    })()
    running.set(key, started)
    return started
  }
  await Promise.all(items.map(run))
  return responses
}
