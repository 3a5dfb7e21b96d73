/**
 * Writes a Mosquitto configuration for gateways with relay-CA client certificates, for an operator:
 *
 *   npx tsx cloud-relay/src/broker/mosquitto-cli.ts --out /etc/mosquitto/pbxgw \
 *     --ca-cert relay-ca.pem --ca-key relay-ca.key --port 8883 --ws-port 443 --dns mqtt.example.net
 *
 * Run it again after a revocation with --revocations FILE (JSON `{ "certificates": [{ "serial", "revokedAt" }],
 * "gateways": ["gw-id"] }`) and --reload-pid PIDFILE: it rewrites the CRL and the ACL and sends SIGHUP.
 * Mosquitto refuses every box once the CRL is past its nextUpdate (30 days after writing): without a relay doing
 * it daily, run this from cron at least weekly.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createRelayCa, RelayPki, type CaMaterial } from '../pki/relay-pki.js'
import { readPidFile, reloadMosquitto, writeMosquittoConfig, type Revocations } from './mosquitto-config.js'

const HELP = `Usage: mosquitto-cli --out DIR (--ca-cert FILE --ca-key FILE | --new-ca NAME) [options]

  --out DIR             directory to write (mosquitto.conf, acl, crl.pem, ca.pem, server.pem/key, relay.pem/key)
  --ca-cert FILE        the relay CA certificate (PEM)
  --ca-key FILE         the relay CA private key (PKCS#8 PEM); keep it secret
  --new-ca NAME         make a new CA instead (writes ca-key.pem next to the config, mode 0600)
  --host ADDR           listen address (default: all)
  --port N              mqtts port (default 8883)
  --ws-port N           MQTT over WebSocket with TLS (443 for sites that allow only HTTPS out)
  --dns NAMES           comma-separated DNS names of the broker's server certificate (default localhost)
  --ip ADDRS            comma-separated IP addresses of the server certificate (default 127.0.0.1,::1)
  --relay-name NAME     the relay's client certificate CN is relay:NAME (default main)
  --user NAME           the account Mosquitto runs as (it must read DIR on every reload)
  --pid-file FILE       where Mosquitto writes its pid (pid_file)
  --revocations FILE    JSON { "certificates": [{ "serial": "hex", "revokedAt": "ISO date" }], "gateways": ["id"] }
  --reload-pid FILE     after writing, SIGHUP the Mosquitto whose pid is in FILE
  --renew-relay-cert    issue a new relay client certificate now; the old one goes into the CRL
  --help

The CRL is valid for 30 days: a relay with broker.mosquitto rewrites it daily; without one, run this command
(with --revocations and --reload-pid) from cron at least weekly, or every box is refused once it expires.
`

function fail(message: string): never {
  process.stderr.write(`mosquitto-cli: ${message}\n\n${HELP}`)
  process.exit(2)
}

function port(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 65535) fail(`${name} must be a port number 1-65535, got "${value}"`)
  return n
}

async function readRevocations(file: string | undefined): Promise<Revocations> {
  if (file === undefined) return { certificates: [], gateways: [] }
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    fail(`cannot read --revocations ${file}: ${(err as Error).message}`)
  }
  const value = parsed as { certificates?: unknown; gateways?: unknown }
  const certificates = Array.isArray(value.certificates) ? value.certificates : []
  const gateways = Array.isArray(value.gateways) ? value.gateways : []
  return {
    certificates: certificates.map((c: unknown, i: number) => {
      const entry = c as { serial?: unknown; revokedAt?: unknown }
      if (typeof entry.serial !== 'string' || !/^[0-9a-fA-F]+$/.test(entry.serial)) fail(`--revocations: certificates[${i}].serial must be a hex string`)
      const revokedAt = new Date(typeof entry.revokedAt === 'string' ? entry.revokedAt : Date.now())
      if (Number.isNaN(revokedAt.getTime())) fail(`--revocations: certificates[${i}].revokedAt is not a date`)
      return { serial: entry.serial.toLowerCase(), revokedAt }
    }),
    gateways: gateways.map((g: unknown, i: number) => {
      if (typeof g !== 'string') fail(`--revocations: gateways[${i}] must be a gateway id`)
      return g
    }),
  }
}

async function main(): Promise<void> {
  let args
  try {
    args = parseArgs({
      options: {
        out: { type: 'string' }, 'ca-cert': { type: 'string' }, 'ca-key': { type: 'string' }, 'new-ca': { type: 'string' },
        host: { type: 'string' }, port: { type: 'string' }, 'ws-port': { type: 'string' }, dns: { type: 'string' }, ip: { type: 'string' },
        'relay-name': { type: 'string' }, user: { type: 'string' }, 'pid-file': { type: 'string' }, revocations: { type: 'string' },
        'reload-pid': { type: 'string' }, 'renew-relay-cert': { type: 'boolean' }, help: { type: 'boolean' },
      },
      strict: true,
    }).values
  } catch (err) {
    fail((err as Error).message)
  }
  if (args.help) {
    process.stdout.write(HELP)
    return
  }
  if (!args.out) fail('--out DIR is required')
  let ca: CaMaterial
  if (args['new-ca']) {
    ca = await createRelayCa(args['new-ca'])
    await writeFile(join(args.out, 'ca-key.pem'), ca.caKeyPem, { mode: 0o600 }).catch(async () => {
      const { mkdir } = await import('node:fs/promises')
      await mkdir(args.out ?? '.', { recursive: true, mode: 0o700 })
      await writeFile(join(args.out ?? '.', 'ca-key.pem'), ca.caKeyPem, { mode: 0o600 })
    })
  } else {
    if (!args['ca-cert'] || !args['ca-key']) fail('give --ca-cert and --ca-key (the relay CA), or --new-ca NAME')
    try {
      ca = { caCertPem: await readFile(args['ca-cert'], 'utf8'), caKeyPem: await readFile(args['ca-key'], 'utf8') }
    } catch (err) {
      fail(`cannot read the CA files: ${(err as Error).message}`)
    }
  }
  let pki: RelayPki
  try {
    pki = await RelayPki.load(ca)
  } catch (err) {
    fail(`the CA certificate or key is not usable (PEM certificate and PKCS#8 EC P-256 key expected): ${(err as Error).message}`)
  }
  const wsPort = port(args['ws-port'], '--ws-port')
  const files = await writeMosquittoConfig({
    configDir: args.out,
    host: args.host,
    port: port(args.port, '--port'),
    ...(wsPort !== undefined ? { websockets: { port: wsPort } } : {}),
    relayName: args['relay-name'],
    serverDnsNames: args.dns?.split(',').map((s) => s.trim()).filter(Boolean),
    serverIpAddresses: args.ip?.split(',').map((s) => s.trim()).filter(Boolean),
    user: args.user,
    pidFile: args['pid-file'],
  }, { pki, revoked: await readRevocations(args.revocations), renewRelayCertificate: args['renew-relay-cert'] === true })
  process.stdout.write(`wrote ${files.confFile}\n  ACL ${files.aclFile}\n  CRL ${files.crlFile}\n  relay client certificate ${files.relayCertFile} (CN ${files.relayCommonName}, client id ${files.relayClientId})\n`)
  if (args['reload-pid']) {
    try {
      reloadMosquitto(await readPidFile(args['reload-pid']))
    } catch (err) {
      fail(`could not reload Mosquitto: ${(err as Error).message}; is it running, and is pid_file set?`)
    }
    process.stdout.write('sent SIGHUP: Mosquitto re-reads the ACL and the CRL\n')
  } else {
    process.stdout.write(`start it with: mosquitto -c ${files.confFile}\n`)
  }
}

await main()
