/**
 * The bundle download for gateways, outside /api/v1 (the credential is the per-command download token):
 *   GET  /updates/v1/bundles/:version    the bundle, whole or one byte range (resume)
 *   HEAD /updates/v1/bundles/:version    its headers only
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import { errorBody, HttpError } from '../http/errors.js'
import type { DownloadTokens } from './download-tokens.js'
import type { Release } from './update-store.js'

export const BUNDLE_PATH_PREFIX = '/updates/v1/bundles'

const Params = Type.Object({
  version: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]*$', description: 'a release version, e.g. 1.4.2' }),
}, { additionalProperties: false })

export interface BundleRoutesDeps {
  tokens: Pick<DownloadTokens, 'verify'>
  release(version: string): Promise<Release | undefined>
  /** Whether the gateway may fetch now: enrolled and not revoked. */
  gatewayAllowed(gatewayId: string): { ok: true } | { ok: false; reason: string }
  now(): number
}

/** A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range within `size`; 'bad' when unsatisfiable or several. */
export function parseRange(header: string, size: number): { start: number; end: number } | 'bad' {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!match || (match[1] === '' && match[2] === '')) return 'bad'
  if (match[1] === '') {
    const suffix = Number(match[2])
    if (suffix === 0) return 'bad'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(match[1])
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1)
  if (start >= size || end < start) return 'bad'
  return { start, end }
}

export function bundleRoutes(deps: BundleRoutesDeps): FastifyPluginAsyncTypebox {
  return async (app) => {
    const handler = async (request: { params: { version: string }; headers: Record<string, string | string[] | undefined>; method: string }, reply: FastifyReply) => {
      const auth = request.headers['authorization']
      const token = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7).trim() : undefined
      if (!token) {
        void reply.header('www-authenticate', 'Bearer realm="pbx-presence-relay updates"')
        throw new HttpError('HTTP_UNAUTHORIZED', 'A bundle is served only to an enrolled gateway with the download token from its cmd/update: send Authorization: Bearer <token>.')
      }
      const { version } = request.params
      const check = deps.tokens.verify(token, version, deps.now())
      if (!check.ok) {
        void reply.header('www-authenticate', 'Bearer realm="pbx-presence-relay updates", error="invalid_token"')
        throw new HttpError('HTTP_UNAUTHORIZED', `The download token was refused: ${check.why}. The relay sends a fresh one with the next cmd/update (resume the rollout, or wait for the box to reconnect).`)
      }
      const allowed = deps.gatewayAllowed(check.gatewayId)
      if (!allowed.ok) throw new HttpError('HTTP_FORBIDDEN', `Gateway ${check.gatewayId} may not fetch updates: ${allowed.reason}.`)
      const release = await deps.release(version)
      if (!release) throw new HttpError('HTTP_NOT_FOUND', `No release ${version} on this relay: it may have been removed; the console lists the releases.`)
      const info = await stat(release.filePath).catch(() => undefined)
      if (!info || info.size !== release.size) {
        throw new HttpError('HTTP_UNAVAILABLE', `The bundle file of ${version} is missing or changed on the relay (expected ${release.size} bytes): the relay's admin must restore ${release.filePath}.`)
      }
      const etag = `"${release.sha256}"`
      void reply.header('etag', etag).header('accept-ranges', 'bytes')
      const rangeHeader = request.headers['range']
      const ifRange = request.headers['if-range']
      // If-Range with another ETag: the partial file on the box is of another bundle, so it gets the whole one.
      const useRange = typeof rangeHeader === 'string' && (ifRange === undefined || ifRange === etag)
      let start = 0
      let end = release.size - 1
      if (useRange) {
        const range = parseRange(rangeHeader, release.size)
        if (range === 'bad') {
          void reply.header('content-range', `bytes */${release.size}`)
          return reply.code(416).send(errorBody('HTTP_RANGE', `The range "${rangeHeader.slice(0, 80)}" is not one range within the bundle's ${release.size} bytes: ask for one range such as bytes=1048576-.`))
        }
        ;({ start, end } = range)
        void reply.code(206).header('content-range', `bytes ${start}-${end}/${release.size}`)
      }
      void reply.header('content-type', 'application/octet-stream').header('cache-control', 'private, no-transform').header('content-length', String(end - start + 1))
      if (request.method === 'HEAD') return reply.send()
      return reply.send(createReadStream(release.filePath, { start, end }))
    }

    // HEAD is its own route: fastify's automatic one would replace the Content-Length with the stripped body's.
    const schema = { params: Params, summary: 'An update bundle for an enrolled gateway (download token from its cmd/update); one byte range resumes a download' }
    app.get(`${BUNDLE_PATH_PREFIX}/:version`, { schema, exposeHeadRoute: false }, handler)
    app.head(`${BUNDLE_PATH_PREFIX}/:version`, { schema }, handler)
  }
}
