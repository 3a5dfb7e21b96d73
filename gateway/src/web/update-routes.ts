import { createHash, randomUUID } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { UpdateProgressDataSchema, type UpdateProgressData } from '../../protocol/schemas.js'
import { HttpError } from './http-error.js'
import { ErrorSchema, OkSchema } from './schemas.js'

/** What the setup page needs of the box's update agent. */
export interface BoxUpdates {
  latest(): UpdateProgressData | undefined
  readonly slot: string
  acceptUpload(file: string, size: number, sha256: string): Promise<{ ok: true } | { ok: false; message: string }>
}

export interface UpdateRoutesOptions {
  /** Undefined where the box has no A/B updates (a container, a development install). */
  updates: BoxUpdates | undefined
  runningVersion: string
  /** Where an upload is streamed to (the data partition: a bundle never passes through memory). */
  dir: string
  /** Largest bundle an upload may be. */
  maxBytes: number
}

const UpdateViewSchema = Type.Object({
  available: Type.Boolean({ description: 'whether this box installs updates (A/B slots with RAUC)' }),
  runningVersion: Type.String(),
  slot: Type.Union([Type.String(), Type.Null()]),
  latest: Type.Union([UpdateProgressDataSchema, Type.Null()]),
})

class UploadTooLarge extends Error {}

/**
 * The setup page's update panel, for sites without a relay: what the box runs and how the last update went, and a
 * bundle upload (streamed to the data partition, size-limited, hashed on the way). Registered inside the signed-in
 * scope, so the session, Origin and CSRF checks of the other routes apply.
 */
export const boxUpdateRoutes: FastifyPluginAsyncTypebox<UpdateRoutesOptions> = async (app, options) => {
  // The bundle stays a stream: the handler writes it to disk as it arrives.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload))

  app.get('/update', { schema: { summary: 'The running version and slot, and the latest update\'s progress', response: { 200: UpdateViewSchema } } }, async () => ({
    available: options.updates !== undefined,
    runningVersion: options.runningVersion,
    slot: options.updates?.slot ?? null,
    latest: options.updates?.latest() ?? null,
  }))

  app.post('/update/bundle', {
    bodyLimit: options.maxBytes,
    schema: { summary: 'Upload a signed update bundle (application/octet-stream); the box checks, installs and restarts into it', response: { 200: OkSchema, '4xx': ErrorSchema } },
  }, async (request) => {
    const updates = options.updates
    if (!updates) throw new HttpError(409, 'WEB_NO_UPDATES', 'This box does not install updates itself (no A/B slots): update it with its own package or image.')
    if (request.headers['content-type'] !== 'application/octet-stream') throw new HttpError(400, 'WEB_BAD_UPLOAD', 'Send the bundle file itself (a .raucb file) as application/octet-stream.')
    const declared = Number(request.headers['content-length'] ?? NaN)
    const mib = Number((options.maxBytes / 1024 / 1024).toPrecision(3))
    if (Number.isFinite(declared) && declared > options.maxBytes) throw new HttpError(413, 'WEB_BODY_TOO_LARGE', `The file is larger than the ${mib} MiB an update bundle may be: check that it is the bundle (.raucb).`)
    await mkdir(options.dir, { recursive: true })
    const file = join(options.dir, `upload-${randomUUID()}.part`)
    const hash = createHash('sha256')
    let size = 0
    try {
      await pipeline(request.body as Readable, async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          size += chunk.length
          if (size > options.maxBytes) throw new UploadTooLarge()
          hash.update(chunk)
          yield chunk
        }
      }, createWriteStream(file, { mode: 0o600 }))
    } catch (err) {
      await rm(file, { force: true })
      if (err instanceof UploadTooLarge) throw new HttpError(413, 'WEB_BODY_TOO_LARGE', `The file is larger than the ${mib} MiB an update bundle may be: check that it is the bundle (.raucb).`)
      throw err
    }
    if (size === 0) {
      await rm(file, { force: true })
      throw new HttpError(400, 'WEB_BAD_UPLOAD', 'The file was empty: choose the bundle file (.raucb) again.')
    }
    const accepted = await updates.acceptUpload(file, size, hash.digest('hex'))
    if (!accepted.ok) throw new HttpError(409, 'WEB_UPDATE_BUSY', accepted.message)
    return { ok: true }
  })
}
