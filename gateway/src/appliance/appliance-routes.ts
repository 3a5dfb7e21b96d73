import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HttpError } from '../web/http-error.js'
import { ErrorSchema } from '../web/schemas.js'
import { NetworkConfirmError, type NetworkService, type NetworkTrial } from './network-service.js'
import { checkNetworkSettings, NetworkSettingsSchema } from './network-settings.js'
import { checkSshSettings, SshSettingsSchema, type SshAccessStore } from './ssh-access.js'

const NetworkViewSchema = Type.Object({
  settings: NetworkSettingsSchema,
  trial: Type.Optional(Type.Object({
    until: Type.String({ description: 'When the box goes back to the previous setting unless confirmed (ISO 8601).' }),
    confirmUrl: Type.String({ description: 'Open the setup page here and confirm.' }),
  })),
  lastApply: Type.Optional(Type.String({ description: 'What the apply unit reported for the last change (first line of <dataDir>/network/apply-result).' })),
})

export interface ApplianceRoutesOptions {
  dataDir: string
  network: NetworkService
  ssh: SshAccessStore
}

const firstLine = (text: string) => text.split('\n')[0]?.slice(0, 300) ?? ''

/**
 * The appliance's settings in the setup page: network (DHCP or static, DNS, NTP, proxy, with a confirmed trial for
 * a new address) and SSH. Registered inside the signed-in scope, so the session and CSRF checks apply.
 */
export const applianceRoutes: FastifyPluginAsyncTypebox<ApplianceRoutesOptions> = async (api, options) => {
  async function view(state: { settings: typeof NetworkSettingsSchema.static; trial?: NetworkTrial }, port: number) {
    const lastApply = await readFile(join(options.dataDir, 'network', 'apply-result'), 'utf8').then(firstLine, () => undefined)
    const address = state.settings.address?.includes(':') ? `[${state.settings.address}]` : state.settings.address
    return {
      settings: state.settings,
      ...(state.trial ? { trial: { until: new Date(state.trial.until).toISOString(), confirmUrl: `https://${address ?? ''}${port === 443 ? '' : `:${port}`}/` } } : {}),
      ...(lastApply ? { lastApply } : {}),
    }
  }

  api.get('/network', { schema: { summary: 'The box\'s network settings, and a trial waiting for confirmation', response: { 200: NetworkViewSchema } } }, async (request) => {
    return view(await options.network.get(), request.socket.localPort ?? 443)
  })

  api.put('/network', { bodyLimit: 16 * 1024, schema: { summary: `DHCP or static address, DNS and NTP servers, HTTP proxy. A new static address is a trial: confirm it from the new address within ${Math.round(options.network.trialMs / 60_000)} minutes or the box goes back`, body: NetworkSettingsSchema, response: { 200: NetworkViewSchema, '4xx': ErrorSchema } } }, async (request) => {
    const problems = checkNetworkSettings(request.body)
    if (problems.length > 0) {
      const field = /^([a-zA-Z]+)/.exec(problems[0] ?? '')?.[1]
      throw new HttpError(400, 'WEB_NETWORK_INVALID', `Check the network settings: ${problems.slice(0, 5).join('; ')}`, field)
    }
    request.log.info({ client: request.ip, mode: request.body.mode }, 'network settings changed in the setup page')
    return view(await options.network.put(request.body), request.socket.localPort ?? 443)
  })

  api.post('/network/confirm', { schema: { summary: 'Keep the new static setting: only accepted at the new address', response: { 200: NetworkViewSchema, '4xx': ErrorSchema } } }, async (request) => {
    try {
      await options.network.confirm(request.socket.localAddress, request.socket.localPort ?? 443)
    } catch (err) {
      if (err instanceof NetworkConfirmError) throw new HttpError(409, err.code, err.message)
      throw err
    }
    return view(await options.network.get(), request.socket.localPort ?? 443)
  })

  api.get('/ssh', { schema: { summary: 'Whether SSH is on, and its public keys', response: { 200: SshSettingsSchema } } }, async () => options.ssh.get())

  api.put('/ssh', { bodyLimit: 256 * 1024, schema: { summary: 'Turn SSH on (with at least one public key) or off; keys only, no password login', body: SshSettingsSchema, response: { 200: SshSettingsSchema, '4xx': ErrorSchema } } }, async (request) => {
    const { keys, problems } = checkSshSettings(request.body)
    if (problems.length > 0) throw new HttpError(400, 'WEB_SSH_INVALID', `Check the SSH settings: ${problems.slice(0, 5).join('; ')}`, 'keys')
    request.log.warn({ client: request.ip, enabled: request.body.enabled, keys: keys.length }, 'SSH settings changed in the setup page')
    return options.ssh.put(request.body.enabled, keys)
  })
}
