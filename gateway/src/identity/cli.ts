import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { systemClock, type Clock } from '#kernel/clock.js'
import { BoxEnrollmentError, EnrollmentClient } from './enrollment-client.js'
import { BoxSealError } from './box-sealer.js'
import { factoryReset, IdentityError, IdentityStore } from './identity-store.js'

export const IDENTITY_HELP = `Enrollment and factory reset:
  node dist/gateway.js enroll --code XXXX-XXXX-XXXX-XXXX [--relay https://relay.example] [--config FILE]
                              [--data-dir DIR] [--ca-file FILE] [--ca-fingerprint SHA256] [--proxy http://proxy:3128]
                                          trade a one-time code from the console for this box's certificate
  node dist/gateway.js factory-reset [--yes] [--config FILE | --data-dir DIR]
                                          wipe the identity, outbox and state: the box enrolls from scratch

  From --config, enroll reads dataDir and relay.enrollUrl, relay.caFile, relay.caFingerprint, relay.proxyUrl;
  the options override them.
`

interface Out {
  out(line: string): void
  err(line: string): void
}

const defaultOut: Out = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
}

/** The parts of the gateway config the identity commands use (the rest may be incomplete before enrollment). */
interface IdentitySettings {
  dataDir: string
  enrollUrl?: string | undefined
  caFile?: string | undefined
  caFingerprint?: string | undefined
  proxyUrl?: string | undefined
}

async function readSettings(configFile: string | undefined): Promise<IdentitySettings> {
  const settings: IdentitySettings = { dataDir: '.data/gateway' }
  if (configFile === undefined) return settings
  let json: unknown
  try {
    json = JSON.parse(await readFile(configFile, 'utf8'))
  } catch (err) {
    throw new BoxEnrollmentError('BOX_CONFIG', `cannot read ${configFile} as JSON: ${(err as Error).message}. Fix the file, or pass --data-dir and --relay instead.`, false)
  }
  const config = (typeof json === 'object' && json !== null ? json : {}) as { dataDir?: unknown; relay?: Record<string, unknown> }
  const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined)
  settings.dataDir = text(config.dataDir) ?? settings.dataDir
  settings.enrollUrl = text(config.relay?.enrollUrl)
  settings.caFile = text(config.relay?.caFile)
  settings.caFingerprint = text(config.relay?.caFingerprint)
  settings.proxyUrl = text(config.relay?.proxyUrl)
  return settings
}

/** Shows a code as XXXX-…-…-XX12: enough to recognise it in a terminal log, useless to anyone reading it. */
function maskCode(code: string): string {
  const clean = code.replace(/[\s-]/g, '')
  return `${clean.slice(0, 4).toUpperCase()}-****-****-**${clean.slice(-2).toUpperCase()}`
}

/**
 * `enroll` and `factory-reset`. Returns the exit code: 0 done, 1 failed (the message says what to do), 2 bad
 * command line or not confirmed.
 */
export async function runIdentityCommand(argv: readonly string[], deps: { clock?: Clock; out?: Out } = {}): Promise<number> {
  const out = deps.out ?? defaultOut
  const [command, ...rest] = argv
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: [...rest],
      options: {
        code: { type: 'string' },
        relay: { type: 'string' },
        config: { type: 'string', short: 'c' },
        'data-dir': { type: 'string' },
        'ca-file': { type: 'string' },
        'ca-fingerprint': { type: 'string' },
        proxy: { type: 'string' },
        yes: { type: 'boolean' },
      },
      strict: true,
    }).values
  } catch (err) {
    out.err(`${(err as Error).message}\n\n${IDENTITY_HELP}`)
    return 2
  }
  const str = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined)
  try {
    const settings = await readSettings(str('config'))
    const dataDir = str('data-dir') ?? settings.dataDir
    if (command === 'factory-reset') {
      const store = new IdentityStore(dataDir)
      const identity = await store.load().catch(() => undefined)
      if (values.yes !== true) {
        out.out(`Factory reset would wipe everything under ${dataDir}${identity ? ` (this box is gateway ${identity.gatewayId} of tenant ${identity.tenantId})` : ''}: identity, config overrides, outbox and state.`)
        out.out('Nothing was removed. Run again with --yes to wipe it; the box then needs a new enrollment code from the console.')
        return 2
      }
      out.out(`Wiping ${dataDir}${identity ? ` (gateway ${identity.gatewayId})` : ''}…`)
      const result = await factoryReset(dataDir)
      out.out(result.removed.length ? `Removed ${result.removed.join(', ')} from ${result.dataDir}.` : `${result.dataDir} was already empty.`)
      out.out('Factory reset done: enroll the box again with a new code from the console (enroll --code …).')
      return 0
    }
    if (command === 'enroll') {
      const code = str('code')
      if (code === undefined) {
        out.err(`enroll needs --code XXXX-XXXX-XXXX-XXXX (create one in the console)\n\n${IDENTITY_HELP}`)
        return 2
      }
      const relayUrl = str('relay') ?? settings.enrollUrl
      const clock = deps.clock ?? systemClock
      const store = new IdentityStore(dataDir)
      const client = new EnrollmentClient({ store, clock, logger: pino({ level: 'silent' }) }, {
        relayUrl,
        caFile: str('ca-file') ?? settings.caFile,
        caFingerprint: str('ca-fingerprint') ?? settings.caFingerprint,
        proxyUrl: str('proxy') ?? settings.proxyUrl,
      })
      out.out(`Enrolling with ${relayUrl ?? '(no relay address)'} using code ${maskCode(code)}; the box's key stays in ${store.dir}…`)
      const identity = await client.enroll({ code, relayUrl })
      out.out(`Enrolled as gateway ${identity.gatewayId} of tenant ${identity.tenantId}.`)
      out.out(`Certificate valid until ${identity.notAfter}; the box renews it after ${identity.renewAfter}.`)
      out.out(identity.brokerUrls.length ? `Broker: ${identity.brokerUrls.join(', ')}.` : 'The relay named no broker URL: set relay.url in the config.')
      out.out('Start (or restart) the gateway service to connect.')
      return 0
    }
    out.err(`unknown command "${command ?? ''}"\n\n${IDENTITY_HELP}`)
    return 2
  } catch (err) {
    if (err instanceof BoxEnrollmentError || err instanceof IdentityError || err instanceof BoxSealError) {
      out.err(`${command === 'enroll' ? 'Enrollment failed' : 'Factory reset failed'} (${err.code}): ${err.message}`)
      return 1
    }
    throw err
  }
}
