import { hostname as osHostname } from 'node:os'
import type { Logger } from 'pino'
import type { Clock } from '#kernel/clock.js'
import { createRelayCa, RelayPki } from '../pki/relay-pki.js'
import { SealError, type Sealer } from '../secrets/sealer.js'
import type { EnrollmentStore } from '../store/enrollment-store.js'

/** The seal purpose of the CA's key: a sealed token cache cannot be swapped in for it. */
export const RELAY_CA_KEY_PURPOSE = 'relay-ca-key'

/** Thrown when the stored CA key cannot be opened: the message says what to do. */
export class RelayCaSealError extends Error {
  readonly code = 'RELAY_CA_SEAL_MISMATCH'
  constructor(message: string) {
    super(message)
    this.name = 'RelayCaSealError'
  }
}

/**
 * The relay CA, made at first start (CN "PBX Presence Relay CA (<hostname>)") and kept in the store with its key
 * sealed; loaded on later starts. Two instances starting at once on an empty store agree on one CA (the first
 * insert wins, the other reads it back).
 */
export async function loadOrCreateRelayCa(deps: { store: EnrollmentStore; sealer: Sealer; clock: Clock; logger: Logger; hostname?: string }): Promise<RelayPki> {
  const log = deps.logger.child({ component: 'relay-ca' })
  let row = await deps.store.readRelayCa()
  if (row === undefined) {
    const name = `PBX Presence Relay CA (${deps.hostname ?? osHostname()})`
    const ca = await createRelayCa(name, { now: deps.clock.now() })
    const pki = await RelayPki.load(ca)
    const inserted = await deps.store.insertRelayCa({
      certificatePem: ca.caCertPem,
      sealedKey: deps.sealer.seal(ca.caKeyPem, RELAY_CA_KEY_PURPOSE),
      fingerprint256: pki.caFingerprint256,
      at: new Date(deps.clock.now()),
    })
    if (inserted) {
      log.info({ name, fingerprint256: pki.caFingerprint256 }, 'relay CA created')
      return pki
    }
    row = await deps.store.readRelayCa()
    if (row === undefined) throw new Error('the relay CA vanished from the store right after another instance created it: check the database')
  }
  let keyPem: string
  try {
    keyPem = deps.sealer.openText(row.sealedKey, RELAY_CA_KEY_PURPOSE)
  } catch (err) {
    if (err instanceof SealError) {
      throw new RelayCaSealError(
        `cannot open the relay CA's key: the seal key (${deps.sealer.source}) is not the one it was sealed with. ` +
          'Start the relay with the original key (RELAY_SEAL_KEY or secrets.sealKeyFile). If that key is lost, the CA is lost ' +
          'with it: delete the row of relay_ca, start the relay (it makes a new CA), and enroll every gateway again with a new code.',
      )
    }
    throw err
  }
  const pki = await RelayPki.load({ caCertPem: row.certificatePem, caKeyPem: keyPem })
  log.info({ fingerprint256: pki.caFingerprint256 }, 'relay CA loaded')
  return pki
}
