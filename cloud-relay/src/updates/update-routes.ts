/**
 * Admin API for releases and rollouts, registered inside /api/v1 (bearer token or an operator's console session;
 * the role check refuses tenant admins, these are fleet-wide):
 *   GET  /updates/releases                   released versions
 *   POST /updates/releases                   register a bundle file already in updates.dir  { version, file, notes }
 *   PUT  /updates/releases/:version/bundle   upload a bundle (application/octet-stream, streamed to disk)
 *   GET  /updates/rollouts                   every rollout with its counts per state
 *   POST /updates/rollouts                   start one  { version, target, stages, failureThreshold, installAt }
 *   GET  /updates/rollouts/:id               one rollout with each gateway's state in words
 *   POST /updates/rollouts/:id/pause | /resume
 */
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import { InstallAtSchema } from '#protocol/schemas.js'
import { ErrorBodySchema, HttpError, type HttpErrorCode } from '../http/errors.js'
import { ReleaseError, type ReleaseLibrary } from './release-library.js'
import { RolloutError, type RolloutEngine } from './rollout-engine.js'
import type { BoxUpdateState, Release, Rollout, RolloutGateway, RolloutTarget } from './update-store.js'

const VersionSchema = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]*$', description: 'a release version of letters, digits and . _ + - (at most 64 characters), e.g. 1.4.2' })
const GatewayId = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'a gateway id' })

const ReleaseSchema = Type.Object({
  version: Type.String(), size: Type.Integer(), sha256: Type.String(), notes: Type.String(), createdBy: Type.String(), createdAt: Type.String({ format: 'date-time' }),
}, { additionalProperties: false })

const RegisterBody = Type.Object({
  version: VersionSchema,
  file: Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/\\\\\\x00]+$', description: 'the bundle\'s file name in the relay\'s bundle folder (updates.dir), without a path' }),
  notes: Type.String({ maxLength: 2000, default: '', description: 'what changed, for admins' }),
}, { additionalProperties: false })

const UploadQuery = Type.Object({
  notes: Type.String({ maxLength: 2000, default: '', description: 'what changed, for admins' }),
}, { additionalProperties: false })

// One object with a kind rather than a union: a mistake is then named in words, not as the first branch that failed.
const TargetSchema = Type.Object({
  kind: Type.Union([Type.Literal('gateway'), Type.Literal('tenant'), Type.Literal('percentage'), Type.Literal('all')], { description: 'gateway, tenant, percentage or all' }),
  gatewayId: Type.Optional(GatewayId),
  tenantId: Type.Optional(GatewayId),
  percent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'a share of all gateways, more than 0 and at most 100' })),
}, { additionalProperties: false, description: 'one gateway {kind:"gateway",gatewayId}, a tenant {kind:"tenant",tenantId}, a percentage of the fleet {kind:"percentage",percent} or {kind:"all"}' })

/** The target as the engine takes it, or a refusal that says which field the kind needs. */
function toTarget(body: Static<typeof TargetSchema>): RolloutTarget {
  const need = (field: string, example: string) => new HttpError('HTTP_BAD_REQUEST', `A target of kind "${body.kind}" names its ${field}: for example {"kind":"${body.kind}","${field}":${example}}.`)
  switch (body.kind) {
    case 'gateway':
      if (body.gatewayId === undefined) throw need('gatewayId', '"gw-office-1"')
      return { kind: 'gateway', gatewayId: body.gatewayId }
    case 'tenant':
      if (body.tenantId === undefined) throw need('tenantId', '"contoso"')
      return { kind: 'tenant', tenantId: body.tenantId }
    case 'percentage':
      if (body.percent === undefined) throw need('percent', '10')
      return { kind: 'percentage', percent: body.percent }
    default:
      return { kind: 'all' }
  }
}

const RolloutBody = Type.Object({
  version: VersionSchema,
  target: TargetSchema,
  stages: Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 100 }), { minItems: 1, maxItems: 10, default: [100], description: 'cumulative shares of the target in percent, rising, ending at 100, e.g. [10, 50, 100]' }),
  failureThreshold: Type.Number({ minimum: 0, maximum: 1, default: 0.1, description: 'the rollout halts by itself when more than this share (0 to 1) of a stage\'s boxes roll back or fail' }),
  installAt: Type.Union([InstallAtSchema], { default: 'now', description: '"now" or an ISO 8601 time with a zone when the boxes reboot into the new version' }),
}, { additionalProperties: false })

const IdParams = Type.Object({ id: Type.String({ pattern: '^r-[0-9a-f]{8}$', description: 'a rollout id such as r-1a2b3c4d' }) }, { additionalProperties: false })
const VersionParams = Type.Object({ version: VersionSchema }, { additionalProperties: false })

const Counts = Type.Record(Type.String(), Type.Integer())
const RolloutSchema = Type.Object({
  id: Type.String(), version: Type.String(), target: TargetSchema, targetText: Type.String(), stages: Type.Array(Type.Number()), failureThreshold: Type.Number(),
  installAt: Type.String(), state: Type.String(), stateText: Type.String(), currentStage: Type.Integer(), reason: Type.String(), createdBy: Type.String(),
  createdAt: Type.String({ format: 'date-time' }), updatedAt: Type.String({ format: 'date-time' }), counts: Counts,
}, { additionalProperties: false })
const BoxSchema = Type.Object({
  gatewayId: Type.String(), stage: Type.Integer(), state: Type.String(), stateText: Type.String({ description: 'the state in words' }),
  bytes: Type.Union([Type.Integer(), Type.Null()]), total: Type.Union([Type.Integer(), Type.Null()]), reason: Type.String(), updatedAt: Type.String({ format: 'date-time' }),
}, { additionalProperties: false })

const ERRORS = { 400: ErrorBodySchema, 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema, 409: ErrorBodySchema, 413: ErrorBodySchema, 500: ErrorBodySchema, 503: ErrorBodySchema }
const SECURITY = [{ bearer: [] }]

/** Each box state in an admin's words (the console shows these). */
export const BOX_STATE_TEXT: Record<BoxUpdateState, string> = {
  waiting: 'Waiting for its stage: not told anything yet',
  queued: 'Queued: told to update, starting soon',
  downloading: 'Downloading the new version',
  verifying: 'Checking the download (size, hash, signature)',
  installing: 'Installing to the spare slot; the running version is untouched',
  rebooting: 'Installed; restarting into the new version',
  healthy: 'Healthy on the new version',
  'rolled-back': 'Rolled back: the new version did not come up healthy, the box went back to the previous one',
  failed: 'Failed before restarting: still on its previous version',
}

export const ROLLOUT_STATE_TEXT: Record<Rollout['state'], string> = {
  running: 'Running',
  paused: 'Paused by an admin: boxes already updating finish, no other box is told to update',
  halted: 'Halted by itself: too many boxes of a stage rolled back or failed',
  done: 'Done: every stage finished',
}

export interface UpdateRoutesDeps {
  releases: ReleaseLibrary
  rollouts: RolloutEngine
  describeTarget(target: Rollout['target']): string
  /** Largest bundle an upload may be. */
  maxBundleBytes: number
}

function actor(request: FastifyRequest): string {
  const principal = request.principal
  return principal && principal.kind === 'session' ? `console:${principal.account.username}` : 'api-token'
}

function toApiRelease(r: Release): Static<typeof ReleaseSchema> {
  return { version: r.version, size: r.size, sha256: r.sha256, notes: r.notes, createdBy: r.createdBy, createdAt: r.createdAt.toISOString() }
}

function toApiBox(b: RolloutGateway): Static<typeof BoxSchema> {
  const text = b.state === 'downloading' && b.total ? `${BOX_STATE_TEXT.downloading}: ${Math.floor(((b.bytes ?? 0) / b.total) * 100)} %` : BOX_STATE_TEXT[b.state]
  return { gatewayId: b.gatewayId, stage: b.stage, state: b.state, stateText: b.reason && (b.state === 'failed' || b.state === 'rolled-back') ? `${text}. Why: ${b.reason}` : text, bytes: b.bytes, total: b.total, reason: b.reason, updatedAt: b.updatedAt.toISOString() }
}

const ERROR_CODES: Record<string, HttpErrorCode> = {
  UPDATE_RELEASE_EXISTS: 'HTTP_CONFLICT', UPDATE_BUNDLE_MISSING: 'HTTP_BAD_REQUEST', UPDATE_BUNDLE_TOO_LARGE: 'HTTP_PAYLOAD_TOO_LARGE', UPDATE_BUNDLE_EMPTY: 'HTTP_BAD_REQUEST',
  UPDATE_BUNDLE_OUTSIDE: 'HTTP_BAD_REQUEST', UPDATE_NO_RELEASE: 'HTTP_BAD_REQUEST', UPDATE_NO_GATEWAYS: 'HTTP_BAD_REQUEST', UPDATE_BUSY: 'HTTP_CONFLICT',
  UPDATE_NO_ROLLOUT: 'HTTP_NOT_FOUND', UPDATE_BAD_STATE: 'HTTP_CONFLICT', UPDATE_BAD_STAGES: 'HTTP_BAD_REQUEST',
}

async function mapped<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (err) {
    if (err instanceof ReleaseError || err instanceof RolloutError) throw new HttpError(ERROR_CODES[err.code] ?? 'HTTP_BAD_REQUEST', err.message)
    throw err
  }
}

export function updateRoutes(deps: UpdateRoutesDeps): FastifyPluginAsyncTypebox {
  return async (app) => {
    const toApiRollout = async (r: Rollout): Promise<Static<typeof RolloutSchema>> => {
      const boxes = (await deps.rollouts.get(r.id))?.boxes ?? []
      const counts: Record<string, number> = {}
      for (const b of boxes) counts[b.state] = (counts[b.state] ?? 0) + 1
      return {
        id: r.id, version: r.version, target: { ...r.target }, targetText: deps.describeTarget(r.target), stages: r.stages, failureThreshold: r.failureThreshold, installAt: r.installAt,
        state: r.state, stateText: ROLLOUT_STATE_TEXT[r.state], currentStage: r.currentStage, reason: r.reason, createdBy: r.createdBy,
        createdAt: r.createdAt.toISOString(), updatedAt: r.updatedAt.toISOString(), counts,
      }
    }

    app.get('/updates/releases', {
      schema: { summary: 'Released versions', security: SECURITY, response: { 200: Type.Object({ releases: Type.Array(ReleaseSchema) }), ...ERRORS } },
    }, async () => ({ releases: (await deps.releases.list()).map(toApiRelease) }))

    app.post('/updates/releases', {
      schema: { summary: 'Register a bundle file already in the relay\'s bundle folder as a release (the relay hashes it)', security: SECURITY, body: RegisterBody, response: { 201: ReleaseSchema, ...ERRORS } },
    }, async (request, reply) => {
      const release = await mapped(() => deps.releases.register(request.body.version, request.body.file, request.body.notes, actor(request)))
      return reply.code(201).send(toApiRelease(release))
    })

    // The bundle is streamed to disk, never held in memory: this parser hands the request stream on untouched.
    app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload))
    app.put('/updates/releases/:version/bundle', {
      // The global body limit does not apply to a stream left unread by the parser: the library counts the bytes.
      bodyLimit: deps.maxBundleBytes,
      schema: { summary: 'Upload a bundle (application/octet-stream) as a new release', security: SECURITY, params: VersionParams, querystring: UploadQuery, response: { 201: ReleaseSchema, ...ERRORS } },
    }, async (request, reply) => {
      if (request.headers['content-type'] !== 'application/octet-stream') throw new HttpError('HTTP_BAD_REQUEST', 'Send the bundle file as the body with Content-Type: application/octet-stream.')
      const declared = Number(request.headers['content-length'] ?? NaN)
      if (Number.isFinite(declared) && declared > deps.maxBundleBytes) throw new HttpError('HTTP_PAYLOAD_TOO_LARGE', `The bundle (${declared} bytes) is larger than the ${deps.maxBundleBytes} bytes the relay takes (updates.maxBundleBytes): nothing was stored.`)
      const release = await mapped(() => deps.releases.upload(request.params.version, request.body as Readable, deps.maxBundleBytes, request.query.notes, actor(request)))
      return reply.code(201).send(toApiRelease(release))
    })

    app.get('/updates/rollouts', {
      schema: { summary: 'Every rollout, newest first, with its boxes counted per state', security: SECURITY, response: { 200: Type.Object({ rollouts: Type.Array(RolloutSchema) }), ...ERRORS } },
    }, async () => ({ rollouts: await Promise.all((await deps.rollouts.list()).map(toApiRollout)) }))

    app.post('/updates/rollouts', {
      schema: { summary: 'Start a rollout of a release to a target in stages', security: SECURITY, body: RolloutBody, response: { 201: RolloutSchema, ...ERRORS } },
    }, async (request, reply) => {
      const body = request.body
      const rollout = await mapped(() => deps.rollouts.create({ version: body.version, target: toTarget(body.target), stages: body.stages, failureThreshold: body.failureThreshold, installAt: body.installAt, by: actor(request) }))
      return reply.code(201).send(await toApiRollout(rollout))
    })

    app.get('/updates/rollouts/:id', {
      schema: { summary: 'One rollout with each gateway\'s update state in words', security: SECURITY, params: IdParams, response: { 200: Type.Object({ rollout: RolloutSchema, gateways: Type.Array(BoxSchema) }), ...ERRORS } },
    }, async (request) => {
      const found = await deps.rollouts.get(request.params.id)
      if (!found) throw new HttpError('HTTP_NOT_FOUND', `No rollout ${request.params.id}: list them with GET /api/v1/updates/rollouts.`)
      return { rollout: await toApiRollout(found.rollout), gateways: found.boxes.map(toApiBox) }
    })

    for (const action of ['pause', 'resume'] as const) {
      app.post(`/updates/rollouts/:id/${action}`, {
        schema: { summary: action === 'pause' ? 'Pause a running rollout' : 'Resume a paused rollout', security: SECURITY, params: IdParams, response: { 200: RolloutSchema, ...ERRORS } },
      }, async (request) => toApiRollout(await mapped(() => deps.rollouts[action](request.params.id, actor(request)))))
    }
  }
}
