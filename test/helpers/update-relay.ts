import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { buildServer } from '../../cloud-relay/src/http/server.js'
import { RelayLink } from '../../cloud-relay/src/ingest/relay-link.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { RelayStore } from '../../cloud-relay/src/store/relay-store.js'
import { openSqlClient, type SqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { Sealer } from '../../cloud-relay/src/secrets/sealer.js'
import { bundleRoutes, BUNDLE_PATH_PREFIX } from '../../cloud-relay/src/updates/bundle-routes.js'
import { DownloadTokens } from '../../cloud-relay/src/updates/download-tokens.js'
import { ReleaseLibrary } from '../../cloud-relay/src/updates/release-library.js'
import { describeTarget, RolloutEngine } from '../../cloud-relay/src/updates/rollout-engine.js'
import { updateRoutes } from '../../cloud-relay/src/updates/update-routes.js'
import { UpdateStore } from '../../cloud-relay/src/updates/update-store.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'

export const UPDATE_API_TOKEN = 'update-test-token-0123456789abcdef'

export interface UpdateRelay {
  db: SqlClient
  store: RelayStore
  updates: UpdateStore
  releases: ReleaseLibrary
  tokens: DownloadTokens
  engine: RolloutEngine
  http: ReturnType<typeof buildServer>
  link: RelayLink
  brokerUrl: string
  bundleDir: string
  counters: Counters
  revoked: Set<string>
  /** Stops the engine, link and server (not the database or broker): a relay restart keeps those. */
  stop(): Promise<void>
}

/**
 * The relay's update half, built like Relay.start builds it: store, bundle folder, tokens, rollout engine, the
 * bundle and admin routes, and a RelayLink on a real broker. `gateways` are enrolled in `tenant`.
 */
export async function startUpdateRelay(options: {
  logger: Logger
  db: SqlClient
  broker: EmbeddedBroker
  bundleDir: string
  gateways: ReadonlyArray<{ id: string; tenantId: string }>
  sealer: Sealer
  commandTimeoutMs?: number
}): Promise<UpdateRelay> {
  const { logger, db, broker, bundleDir } = options
  const counters = new Counters()
  const store = new RelayStore(db)
  const updates = new UpdateStore(db)
  const releases = new ReleaseLibrary({ dir: bundleDir }, { store: updates, clock: systemClock })
  const tokens = new DownloadTokens(await updates.tokenKey(options.sealer), 3_600_000)
  const revoked = new Set<string>()
  const tenantOf = new Map(options.gateways.map((g) => [g.id, g.tenantId]))
  const gatewayAllowed = (id: string): { ok: true; tenantId: string } | { ok: false; reason: string } => {
    if (revoked.has(id)) return { ok: false, reason: 'the gateway is revoked' }
    const tenantId = tenantOf.get(id)
    return tenantId === undefined ? { ok: false, reason: 'unknown gateway' } : { ok: true, tenantId }
  }
  let seq = 0
  // eslint-disable-next-line prefer-const
  let engine: RolloutEngine
  const brokerUrl = `mqtt://127.0.0.1:${broker.port}`
  const link = new RelayLink({ url: brokerUrl, username: 'relay', password: 'relay-pw', commandTimeoutMs: options.commandTimeoutMs ?? 10_000 }, {
    knowsGateway: () => false,
    gatewayAllowed,
    onStatus: async (id, data) => {
      if (data.state === 'online') engine.onGatewayOnline(id)
    },
    onLink: async () => undefined,
    onEndpoint: async () => undefined,
    onDirectory: async () => undefined,
    onUpdateProgress: async (id, data) => {
      await updates.setGatewaySlot(id, data.slot)
      await engine.onProgress(id, data)
    },
    nextCommandSeq: async () => ++seq,
  }, { logger, counters })
  await link.start()
  engine = new RolloutEngine({
    store: updates,
    clock: systemClock,
    logger,
    counters,
    release: (version) => releases.get(version),
    gateways: () => options.gateways.filter((g) => !revoked.has(g.id)),
    download: (gatewayId, version) => ({ url: `https://relay.test${BUNDLE_PATH_PREFIX}/${version}`, token: tokens.issue(gatewayId, version, Date.now()) }),
    sendUpdate: (gatewayId, data) => link.sendUpdate(gatewayId, data),
  })
  await engine.start()
  const http = buildServer({
    store,
    explainer: { explain: () => undefined, listPeople: () => [] },
    logger,
    apiToken: UPDATE_API_TOKEN,
    version: 'test',
    health: () => ({ broker: link.connected, store: db.kind }),
    publicRoutes: [bundleRoutes({ tokens, release: (v) => releases.get(v), gatewayAllowed, now: () => Date.now() })],
    apiRoutes: [updateRoutes({ releases, rollouts: engine, describeTarget, maxBundleBytes: 64 * 1024 })],
  })
  await http.ready()
  return {
    db, store, updates, releases, tokens, engine, http, link, brokerUrl, bundleDir, counters, revoked,
    async stop() {
      engine.stop()
      await link.stop()
      await engine.idle()
      await http.close()
    },
  }
}

/** A database (PGlite in memory unless a URL is given), migrated, with a tenant and its gateways. */
export async function updateDatabase(logger: Logger, gateways: ReadonlyArray<{ id: string; tenantId: string }>, databaseUrl?: string): Promise<SqlClient> {
  const db = await openSqlClient({ dataDir: 'memory', databaseUrl }, logger)
  await migrate(db, logger)
  const store = new RelayStore(db)
  for (const tenant of new Set(gateways.map((g) => g.tenantId))) await store.upsertTenant(tenant, tenant)
  for (const g of gateways) await store.upsertGateway({ id: g.id, tenantId: g.tenantId, name: g.id, secretHash: null })
  return db
}

export async function bundleFolder(): Promise<{ dir: string; cleanup: () => Promise<void>; write: (name: string, bytes: Buffer) => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'bundles-'))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }), write: (name, bytes) => writeFile(join(dir, name), bytes) }
}

export const testSealer = (): Sealer => new Sealer(randomBytes(32), 'test')
