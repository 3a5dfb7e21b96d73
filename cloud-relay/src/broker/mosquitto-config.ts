import type { ChildProcess } from 'node:child_process'
import mqtt from 'mqtt'
import { X509Certificate } from 'node:crypto'
import { mkdir, open, readFile, rename, stat } from 'node:fs/promises'
import type { Logger } from 'pino'
import { join, resolve } from 'node:path'
import { MAX_PAYLOAD_BYTES } from '#protocol/version.js'
import { TOPIC_PREFIX, isTopicId } from '#protocol/topics.js'
import type { RelayPki } from '../pki/relay-pki.js'
import { RELAY_CN_PREFIX } from './peer-identity.js'

/**
 * Writes a Mosquitto 2.0 configuration directory for gateways with client certificates from the relay CA:
 * mosquitto.conf, the ACL pattern file, the CRL, the CA, the broker's server certificate and the relay's own
 * client certificate. The broker takes the gateway id from the certificate's CN (use_identity_as_username),
 * so the ACL patterns (%u) confine each gateway to its own topic root, and the client id too
 * (use_username_as_clientid): a box cannot take over the relay's or another gateway's session.
 *
 * Facts checked against Debian's mosquitto 2.0.11 (test/broker/mosquitto.test.ts, README "Mosquitto"):
 * - websockets are built in (libwebsockets linked statically): a `protocol websockets` listener with the same
 *   TLS lines accepts client certificates and use_identity_as_username;
 * - a SIGHUP re-reads the ACL file and the CRL; a connected client stays connected, but from then on its
 *   publishes and the messages it would receive are checked against the new ACL (a revoked gateway's `topic
 *   deny #` wins over the patterns), and a new TLS handshake with a revoked certificate fails ("certificate
 *   revoked"). To cut the open connection too, `revokeOnMosquitto` takes over its client id.
 */

export interface MosquittoConfigOptions {
  /** Directory the files are written to (created 0700). */
  configDir: string
  /** Address of the mqtts listener; default all interfaces. */
  host?: string | undefined
  /** mqtts port; default 8883. */
  port?: number | undefined
  /** A websockets listener (needs a Mosquitto built with libwebsockets; Debian's 2.0.11 is not). */
  websockets?: { port: number } | undefined
  /** The relay's name: its client certificate's CN is `relay:<name>`; default "main". */
  relayName?: string | undefined
  /** Largest MQTT packet; default the protocol's payload cap plus room for the topic and header. */
  maxPacketSize?: number | undefined
  /** Messages queued per offline persistent session (the relay's, during a relay outage); default 1,000,000. */
  maxQueuedMessages?: number | undefined
  /** Names and addresses in the broker's server certificate (what gateways dial). */
  serverDnsNames?: readonly string[] | undefined
  serverIpAddresses?: readonly string[] | undefined
  /** Mosquitto log destination: "stderr" (default, for systemd/journald) or a file path. */
  logDest?: string | undefined
  /** Mosquitto writes its pid here (for reload). */
  pidFile?: string | undefined
  /**
   * The account Mosquitto runs as when started as root (its `user` option; Mosquitto's default is "mosquitto").
   * It must be able to read this directory at every reload: the writer makes the directory and key files
   * owned by nobody else, so run Mosquitto as the account that runs the relay's CLI, or chown the directory.
   */
  user?: string | undefined
}

/** A certificate that must no longer get in (CRL): a revoked gateway's, or one superseded by a renewal. */
export interface RevokedCertificate {
  serial: string
  revokedAt: Date
}

/** What the broker must refuse: certificates (CRL, new handshakes) and whole gateways (ACL deny, open connections). */
export interface Revocations {
  certificates: readonly RevokedCertificate[]
  gateways: readonly string[]
}

export interface MosquittoConfigFiles {
  configDir: string
  confFile: string
  aclFile: string
  crlFile: string
  caFile: string
  serverCertFile: string
  serverKeyFile: string
  relayCertFile: string
  relayKeyFile: string
  /** The relay's MQTT identity: CN of its certificate and the stable client id of its persistent session. */
  relayCommonName: string
  relayClientId: string
  /** CN (and so client id) of the relay's retained-message guard; its certificate is issued in memory. */
  retainedGuardCommonName: string
  port: number
}

/** Relay certificates replaced in this directory, kept in the CRL until they expire (superseded.json). */
const SUPERSEDED_FILE = 'superseded.json'

/** Certificates expiring within this many days are re-issued when the config is written again. */
const RENEW_WITHIN_DAYS = 30
const DAY_MS = 86_400_000

/** Gateway-to-relay topics a gateway may publish (DESIGN §3), never cmd/. */
export const GATEWAY_WRITE_PATTERNS = ['status', 'telemetry', 'update', 'link/+', 'evt/+', 'res/+'] as const

/** The CN of the relay's retained-message guard (MosquittoRetainedGuard) for a relay CN. */
export function retainedGuardCommonName(relayCommonName: string): string {
  return `${relayCommonName}.retained`
}

/** The ACL pattern file. Revoked gateways get a `user` block denying everything, checked before the patterns. */
export function renderAcl(relayCommonName: string, revokedGateways: readonly string[]): string {
  const lines = [
    '# Written by the cloud relay (cloud-relay/src/broker/mosquitto-config.ts). Do not edit: it is rewritten on every revocation.',
    '# The username is the certificate CN (use_identity_as_username): the gateway id, or relay:<name> for the relay.',
    '',
    '# The relay: everything under the topic root (it reads all gateways and sends commands).',
    `user ${relayCommonName}`,
    `topic readwrite ${TOPIC_PREFIX}/#`,
    '',
    '# The relay\'s retained-message guard: reads everything, clears retained messages gateways may not keep.',
    `user ${retainedGuardCommonName(relayCommonName)}`,
    `topic readwrite ${TOPIC_PREFIX}/#`,
    '',
  ]
  const ids = [...new Set(revokedGateways)].filter(isTopicId).sort()
  if (ids.length > 0) {
    lines.push('# Revoked gateways: a user block is checked before the patterns, and deny wins.')
    for (const id of ids) lines.push(`user ${id}`, 'topic deny #', '')
  }
  lines.push('# Every gateway: publish only under its own root, never cmd/; read only its own cmd/#.', '# Patterns apply to every user.')
  for (const suffix of GATEWAY_WRITE_PATTERNS) lines.push(`pattern write ${TOPIC_PREFIX}/%u/${suffix}`)
  lines.push(`pattern read ${TOPIC_PREFIX}/%u/cmd/#`, '')
  return lines.join('\n')
}

export function renderConf(options: MosquittoConfigOptions, files: Omit<MosquittoConfigFiles, 'confFile' | 'relayCommonName' | 'relayClientId' | 'port'>): string {
  const port = options.port ?? 8883
  const maxPacket = options.maxPacketSize ?? MAX_PAYLOAD_BYTES + 64 * 1024
  const lines = [
    '# Written by the cloud relay (cloud-relay/src/broker/mosquitto-config.ts).',
    '# Gateways authenticate with client certificates from the relay CA; the CN is their identity.',
    'per_listener_settings false',
    'allow_anonymous false',
    `acl_file ${files.aclFile}`,
    `max_packet_size ${maxPacket}`,
    // The relay's persistent session keeps QoS 1 messages while it restarts; gateways produce a few per second.
    `max_queued_messages ${options.maxQueuedMessages ?? 1_000_000}`,
    'max_queued_bytes 0',
    'max_inflight_messages 100',
    // A publish over the limit is dropped by the broker, and in 2.0 the client is disconnected.
    'persistence true',
    `persistence_location ${join(files.configDir, 'data')}/`,
    'autosave_interval 30',
    // Acknowledgements go out at once instead of waiting behind Nagle's algorithm for the peer's delayed ACK.
    'set_tcp_nodelay true',
    `log_dest ${options.logDest === undefined || options.logDest === 'stderr' ? 'stderr' : `file ${options.logDest}`}`,
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'connection_messages true',
    'log_timestamp true',
    ...(options.pidFile ? [`pid_file ${options.pidFile}`] : []),
    ...(options.user ? [`user ${options.user}`] : []),
    '',
    `listener ${port}${options.host ? ` ${options.host}` : ''}`,
    'protocol mqtt',
    ...tlsLines(files),
  ]
  if (options.websockets) lines.push('', `listener ${options.websockets.port}${options.host ? ` ${options.host}` : ''}`, 'protocol websockets', ...tlsLines(files))
  lines.push('')
  return lines.join('\n')
}

function tlsLines(files: Pick<MosquittoConfigFiles, 'caFile' | 'serverCertFile' | 'serverKeyFile' | 'crlFile'>): string[] {
  return [
    `cafile ${files.caFile}`,
    `certfile ${files.serverCertFile}`,
    `keyfile ${files.serverKeyFile}`,
    `crlfile ${files.crlFile}`,
    'require_certificate true',
    'use_identity_as_username true',
    // The client id is the certificate's CN too: without it a box could connect as relay:main or as another
    // gateway and kick it off (Mosquitto closes the older connection of a client id), wiping its session.
    'use_username_as_clientid true',
    'tls_version tlsv1.2',
  ]
}

/**
 * Writes (or rewrites) the directory. The server and relay certificates are kept while they were issued by this
 * CA and are not near expiry, so a rewrite for a revocation changes only the CRL and the ACL. Each file is
 * written to a temporary name and renamed, so Mosquitto never reads half a file.
 */
export async function writeMosquittoConfig(options: MosquittoConfigOptions, input: { pki: RelayPki; revoked: Revocations; now?: number; renewRelayCertificate?: boolean }): Promise<MosquittoConfigFiles> {
  const dir = resolve(options.configDir)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await mkdir(join(dir, 'data'), { recursive: true, mode: 0o700 })
  const now = input.now ?? Date.now()
  const relayCommonName = `${RELAY_CN_PREFIX}${options.relayName ?? 'main'}`
  const files: MosquittoConfigFiles = {
    configDir: dir,
    confFile: join(dir, 'mosquitto.conf'),
    aclFile: join(dir, 'acl'),
    crlFile: join(dir, 'crl.pem'),
    caFile: join(dir, 'ca.pem'),
    serverCertFile: join(dir, 'server.pem'),
    serverKeyFile: join(dir, 'server.key'),
    relayCertFile: join(dir, 'relay.pem'),
    relayKeyFile: join(dir, 'relay.key'),
    relayCommonName,
    relayClientId: relayCommonName,
    retainedGuardCommonName: retainedGuardCommonName(relayCommonName),
    port: options.port ?? 8883,
  }
  await writeAtomic(files.caFile, input.pki.caCertPem, 0o644)
  if (!(await stillGood(files.serverCertFile, input.pki, now))) {
    const server = await input.pki.issueServerCertificate({
      dnsNames: options.serverDnsNames ?? ['localhost'],
      ipAddresses: options.serverIpAddresses ?? ['127.0.0.1', '::1'],
      now,
    })
    await writeAtomic(files.serverKeyFile, server.keyPem, 0o600)
    await writeAtomic(files.serverCertFile, server.certPem, 0o644)
  }
  if (input.renewRelayCertificate === true || !(await stillGood(files.relayCertFile, input.pki, now, relayCommonName))) {
    // The certificate it replaces goes into the CRL: a relay certificate has full access to the bus.
    await rememberSuperseded(dir, files.relayCertFile, input.pki, now)
    const relay = await input.pki.issueClientCertificate(relayCommonName, { now })
    await writeAtomic(files.relayKeyFile, relay.keyPem, 0o600)
    await writeAtomic(files.relayCertFile, relay.certPem, 0o644)
  }
  await writeCrl(dir, input.pki, input.revoked.certificates, now)
  await writeAtomic(files.aclFile, renderAcl(relayCommonName, input.revoked.gateways), 0o644)
  await writeAtomic(files.confFile, renderConf(options, files), 0o644)
  return files
}

/**
 * Writes configDir/crl.pem: the given certificates plus the relay certificates superseded in this directory,
 * valid from now for `nextUpdateDays` (Mosquitto refuses every handshake once a CRL is past its nextUpdate).
 */
export async function writeCrl(configDir: string, pki: RelayPki, certificates: readonly RevokedCertificate[], now: number, nextUpdateDays = 30): Promise<void> {
  const dir = resolve(configDir)
  const superseded = (await readSuperseded(dir)).filter((c) => c.notAfter.getTime() > now)
  const listed = new Set(certificates.map((c) => c.serial.toLowerCase()))
  const all = [...certificates, ...superseded.filter((c) => !listed.has(c.serial)).map((c) => ({ serial: c.serial, revokedAt: c.revokedAt }))]
  await writeAtomic(join(dir, 'crl.pem'), await pki.createCrl(all, { now, nextUpdateDays }), 0o644)
}

async function readSuperseded(dir: string): Promise<Array<{ serial: string; revokedAt: Date; notAfter: Date }>> {
  let text: string
  try {
    text = await readFile(join(dir, SUPERSEDED_FILE), 'utf8')
  } catch {
    return []
  }
  const parsed = JSON.parse(text) as unknown
  if (!Array.isArray(parsed)) throw new Error(`${join(dir, SUPERSEDED_FILE)} is not a JSON array: restore it or delete it (its certificates then leave the CRL)`)
  return parsed.flatMap((entry: unknown) => {
    const e = entry as { serial?: unknown; revokedAt?: unknown; notAfter?: unknown }
    if (typeof e.serial !== 'string' || !/^[0-9a-f]+$/.test(e.serial) || typeof e.revokedAt !== 'string' || typeof e.notAfter !== 'string') return []
    return [{ serial: e.serial, revokedAt: new Date(e.revokedAt), notAfter: new Date(e.notAfter) }]
  })
}

async function rememberSuperseded(dir: string, certFile: string, pki: RelayPki, now: number): Promise<void> {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(await readFile(certFile, 'utf8'))
  } catch {
    return // no certificate yet
  }
  if (!cert.checkIssued(new X509Certificate(pki.caCertPem))) return // another CA's: the CRL cannot name it anyway
  const entries = (await readSuperseded(dir)).filter((c) => c.notAfter.getTime() > now)
  entries.push({ serial: cert.serialNumber.toLowerCase(), revokedAt: new Date(now), notAfter: new Date(cert.validTo) })
  const json = entries.map((e) => ({ serial: e.serial, revokedAt: e.revokedAt.toISOString(), notAfter: e.notAfter.toISOString() }))
  await writeAtomic(join(dir, SUPERSEDED_FILE), `${JSON.stringify(json, null, 2)}\n`, 0o644)
}

/** Makes a running Mosquitto re-read its ACL file and CRL (SIGHUP). */
export function reloadMosquitto(target: number | ChildProcess): void {
  const pid = typeof target === 'number' ? target : target.pid
  if (pid === undefined) throw new Error('mosquitto has no pid: it is not running')
  process.kill(pid, 'SIGHUP')
}

/** How old Mosquitto's pid file must be before it is sent SIGHUP (see readPidFile). */
export const PID_SETTLE_MS = 3000

/**
 * The pid in a pid_file, for reload from the CLI and the relay. A pid file left behind by a Mosquitto that is gone
 * may name another process by now: where /proc says what the process is, it must be mosquitto.
 */
export async function readPidFile(file: string, settleMs = PID_SETTLE_MS): Promise<number> {
  // Mosquitto writes its pid file before it opens its listeners and sets up its signal handlers; a SIGHUP in that
  // window ends it without a word (SIGHUP's default action). Seen when the relay's start-time CRL refresh met a
  // Mosquitto started at the same moment: wait until the pid file is settleMs old.
  const age = Date.now() - (await stat(file)).mtimeMs
  if (age < settleMs) await new Promise((resolve) => setTimeout(resolve, settleMs - age))
  const text = (await readFile(file, 'utf8')).trim()
  const pid = Number(text)
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${file} does not hold a process id ("${text.slice(0, 20)}")`)
  const command = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => undefined)
  if (command !== undefined && !command.trim().startsWith('mosquitto')) {
    throw new Error(`${file} names process ${pid}, which is "${command.trim()}", not mosquitto: the pid file is stale (is Mosquitto running?)`)
  }
  return pid
}

/** Rewrites the CRL only (fresh nextUpdate) and reloads Mosquitto through its pid file when there is one. */
export async function refreshMosquittoCrl(params: { configDir: string; pidFile?: string | undefined; pki: RelayPki; certificates: readonly RevokedCertificate[]; now: number; nextUpdateDays?: number; logger?: Logger }): Promise<{ reloaded: boolean }> {
  await writeCrl(params.configDir, params.pki, params.certificates, params.now, params.nextUpdateDays)
  if (params.pidFile === undefined) return { reloaded: false }
  let pid: number
  try {
    pid = await readPidFile(params.pidFile)
  } catch (err) {
    // Not running yet: it reads the fresh CRL when it starts.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { reloaded: false }
    throw err
  }
  reloadMosquitto(pid)
  return { reloaded: true }
}

async function stillGood(certFile: string, pki: RelayPki, now: number, commonName?: string): Promise<boolean> {
  let pem: string
  try {
    pem = await readFile(certFile, 'utf8')
  } catch {
    return false
  }
  try {
    const cert = new X509Certificate(pem)
    if (!cert.checkIssued(new X509Certificate(pki.caCertPem))) return false
    if (new Date(cert.validTo).getTime() - now < RENEW_WITHIN_DAYS * DAY_MS) return false
    if (commonName !== undefined && !cert.subject.split('\n').includes(`CN=${commonName}`)) return false
    return true
  } catch {
    return false
  }
}

async function writeAtomic(file: string, content: string, mode: number): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`
  const handle = await open(temp, 'w', mode)
  try {
    await handle.writeFile(content)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temp, file)
}

export interface KickCredentials {
  /** mqtts URL of the Mosquitto listener. */
  url: string
  caPem: string
}

/** A kick certificate lives this long (days): long enough to connect once, and its key never leaves memory. */
const KICK_CERTIFICATE_DAYS = 10 / (24 * 60)

/**
 * Closes a gateway's open connection on Mosquitto. The client id is the certificate's CN there
 * (use_username_as_clientid), so the relay issues itself a short-lived certificate with the gateway's id as CN,
 * connects with it (session takeover: Mosquitto drops the older connection) with a clean session so its queued
 * commands go too, then disconnects. The revoked gateway's ACL denies that identity everything, and its own
 * certificates are in the CRL.
 */
export async function kickMosquittoClient(gatewayId: string, credentials: KickCredentials & { pki: RelayPki }, timeoutMs = 5000): Promise<void> {
  const kick = await credentials.pki.issueClientCertificate(gatewayId, { validityDays: KICK_CERTIFICATE_DAYS })
  const client = await mqtt.connectAsync(credentials.url, {
    clientId: gatewayId,
    username: gatewayId,
    clean: true,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
    ca: credentials.caPem,
    cert: kick.certPem,
    key: kick.keyPem,
  })
  await client.endAsync()
}

/**
 * Revocation on Mosquitto, effective at once: rewrite the CRL and ACL (the gateway's `topic deny #`), SIGHUP so
 * Mosquitto reads them (new handshakes with the certificate fail; the open connection can no longer publish or
 * receive), then take over the gateway's client id so its open connection is closed.
 */
export async function revokeOnMosquitto(params: {
  options: MosquittoConfigOptions
  pki: RelayPki
  /** Every revocation, this gateway's included. */
  revoked: Revocations
  gatewayId: string
  mosquitto: number | ChildProcess
  kick: KickCredentials
}): Promise<MosquittoConfigFiles> {
  const files = await writeMosquittoConfig(params.options, { pki: params.pki, revoked: params.revoked })
  reloadMosquitto(params.mosquitto)
  await kickMosquittoClient(params.gatewayId, { ...params.kick, pki: params.pki })
  return files
}

/**
 * The relay's own revocation path for an external Mosquitto whose directory mosquitto-cli wrote: only the CRL and
 * the ACL change (the relay does not know the listener options the operator chose), then SIGHUP through the pid
 * file when there is one, then the takeover that closes the open connection.
 */
export async function applyMosquittoRevocations(params: {
  configDir: string
  pidFile?: string | undefined
  pki: RelayPki
  revoked: Revocations
  gatewayId: string
  kick: KickCredentials
  relayName?: string | undefined
}): Promise<void> {
  const dir = resolve(params.configDir)
  const relayCommonName = `${RELAY_CN_PREFIX}${params.relayName ?? 'main'}`
  await writeCrl(dir, params.pki, params.revoked.certificates, Date.now())
  await writeAtomic(join(dir, 'acl'), renderAcl(relayCommonName, params.revoked.gateways), 0o644)
  if (params.pidFile !== undefined) reloadMosquitto(await readPidFile(params.pidFile))
  await kickMosquittoClient(params.gatewayId, { ...params.kick, pki: params.pki })
}
