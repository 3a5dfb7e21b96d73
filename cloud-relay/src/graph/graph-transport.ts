/**
 * The transport and authority settings every msal-node application of the relay shares (the app-only client
 * in graph-presence-client.ts, the delegated service accounts in service-accounts.ts): one undici dispatcher
 * that trusts an extra CA next to the public roots, and the authority fields that keep msal away from
 * Microsoft's instance discovery when the authority is not a Microsoft cloud (the simulator, a proxy).
 */
import { createSecureContext, rootCertificates } from 'node:tls'
import { LogLevel, type Configuration } from '@azure/msal-node'
import type { Logger } from 'pino'
import { Agent } from 'undici'

/** undefined: Node's defaults. One secure context for every connection (parsing the roots costs ms each). */
export function createGraphDispatcher(caPem: string | undefined): Agent | undefined {
  return caPem === undefined ? undefined : new Agent({ connect: { secureContext: createSecureContext({ ca: [...rootCertificates, caPem] }) } })
}

export interface AuthoritySettings {
  authorityHost: string
  tenantId: string
  knownAuthority: boolean
  authorityMetadata?: string | undefined
}

export function msalAuthority(s: AuthoritySettings): Pick<NonNullable<Configuration['auth']>, 'authority' | 'knownAuthorities' | 'authorityMetadata'> {
  const host = s.authorityHost.replace(/\/+$/, '')
  return {
    authority: `${host}/${s.tenantId}`,
    ...(s.knownAuthority ? { knownAuthorities: [new URL(host).host] } : {}),
    ...(s.authorityMetadata === undefined ? {} : { authorityMetadata: s.authorityMetadata }),
  }
}

/** msal's own log: errors as warnings (the failure reaches us as an exception too), the rest at debug. */
export function msalLoggerOptions(log: Logger): NonNullable<NonNullable<Configuration['system']>['loggerOptions']> {
  return {
    piiLoggingEnabled: false,
    logLevel: LogLevel.Warning,
    loggerCallback: (level, message) => {
      if (level === LogLevel.Error) log.warn({ msal: message }, 'msal error')
      else log.debug({ msal: message }, 'msal message')
    },
  }
}

export function isMicrosoftAuthority(authorityHost: string): boolean {
  return /^https:\/\/login\.(microsoftonline\.(com|us)|chinacloudapi\.cn|partner\.microsoftonline\.cn)\/?$/i.test(authorityHost)
}
