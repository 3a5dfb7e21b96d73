import { isIPv4, isIPv6 } from 'node:net'
import { Type, type Static } from '@sinclair/typebox'

/**
 * The box's network settings as the setup page edits them, their strict check, and the systemd-networkd /
 * timesyncd / proxy files they become. Pure: the store and the apply trigger are in network-service.ts.
 */

export const MAX_SERVERS = 4

export const NetworkSettingsSchema = Type.Object({
  mode: Type.Union([Type.Literal('dhcp'), Type.Literal('static')], { description: 'dhcp (the default) or static.' }),
  address: Type.Optional(Type.String({ maxLength: 64, description: 'Static: the box\'s IPv4 or IPv6 address.' })),
  prefix: Type.Optional(Type.Integer({ minimum: 0, maximum: 128, description: 'Static: the prefix length, e.g. 24 for 255.255.255.0.' })),
  gateway: Type.Optional(Type.String({ maxLength: 64, description: 'Static: the default gateway (router), same address family.' })),
  dns: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 16, default: [], description: `DNS servers (IP addresses, at most ${MAX_SERVERS}); with DHCP they replace the DHCP server's.` }),
  ntp: Type.Array(Type.String({ maxLength: 253 }), { maxItems: 16, default: [], description: `NTP servers (names or addresses, at most ${MAX_SERVERS}); empty: from DHCP, else Debian's pool.` }),
  httpProxy: Type.Optional(Type.String({ maxLength: 512, description: 'HTTP proxy for the box\'s outbound connections, http://host:port (no credentials).' })),
}, { additionalProperties: false })
export type NetworkSettings = Static<typeof NetworkSettingsSchema>

export const DEFAULT_NETWORK: NetworkSettings = Object.freeze({ mode: 'dhcp', dns: [], ntp: [] }) as NetworkSettings

/** Characters that must never reach a rendered file or a shell, whatever the field. */
const FORBIDDEN = /[\s;&|`$<>\\'"(){}*?!#=,]/

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

function ipv4Number(ip: string): number {
  return ip.split('.').reduce((n, part) => n * 256 + Number(part), 0)
}

/** Why an address cannot be a box's own address or a server's, or undefined when it can. */
function unusableAddress(ip: string): string | undefined {
  if (isIPv4(ip)) {
    const n = ipv4Number(ip)
    const first = n >>> 24
    if (first === 127) return 'is a loopback address'
    if (first === 0) return 'is not a usable address (0.x.x.x)'
    if (first >= 224) return 'is a multicast or reserved address'
    if (first === 169 && ((n >>> 16) & 0xff) === 254) return 'is a link-local address (169.254.x.x), which the box picks by itself'
    return undefined
  }
  const lower = ip.toLowerCase()
  if (lower === '::' || lower === '::1') return 'is the unspecified or loopback address'
  if (lower.startsWith('ff')) return 'is a multicast address'
  return undefined
}

/**
 * Every problem with submitted settings, in words an installer can act on; empty when they are good. Strict on
 * purpose: what passes here is written into files that root applies.
 */
export function checkNetworkSettings(s: NetworkSettings): string[] {
  const problems: string[] = []
  const fields: Array<[string, string | undefined]> = [['address', s.address], ['gateway', s.gateway], ['httpProxy', s.httpProxy], ...s.dns.map((v, i): [string, string] => [`dns[${i}]`, v]), ...s.ntp.map((v, i): [string, string] => [`ntp[${i}]`, v])]
  for (const [name, value] of fields) {
    if (value !== undefined && FORBIDDEN.test(value)) problems.push(`${name}: remove spaces, line breaks and characters such as ; & | $ \` < > ' " \\ = , from "${value.replace(/[\u0000-\u001f]/g, '?').slice(0, 80)}"`)
  }
  if (problems.length > 0) return problems

  if (s.mode === 'static') {
    const family = s.address && isIPv4(s.address) ? 4 : s.address && isIPv6(s.address) ? 6 : undefined
    if (!s.address) problems.push('address: a static setting needs the box\'s address, e.g. 192.168.1.20')
    else if (!family) problems.push(`address: "${s.address}" is not an IPv4 or IPv6 address (e.g. 192.168.1.20 or 2001:db8::20)`)
    else if (unusableAddress(s.address)) problems.push(`address: ${s.address} ${unusableAddress(s.address)}: choose an address of the LAN`)
    const maxPrefix = family === 6 ? 128 : 32
    if (s.prefix === undefined) problems.push('prefix: a static setting needs the prefix length, e.g. 24 for the netmask 255.255.255.0')
    else if (s.prefix < 8 || s.prefix > maxPrefix) problems.push(`prefix: ${s.prefix} is out of range: use 8 to ${maxPrefix} (24 is the netmask 255.255.255.0)`)
    if (family === 4 && s.address && s.prefix !== undefined && s.prefix >= 8 && s.prefix <= 30 && !unusableAddress(s.address)) {
      const host = ipv4Number(s.address) % 2 ** (32 - s.prefix)
      if (host === 0) problems.push(`address: ${s.address}/${s.prefix} is the network's own address: choose a host address in it`)
      if (host === 2 ** (32 - s.prefix) - 1) problems.push(`address: ${s.address}/${s.prefix} is the network's broadcast address: choose a host address in it`)
    }
    if (s.gateway !== undefined && s.gateway !== '') {
      const gatewayFamily = isIPv4(s.gateway) ? 4 : isIPv6(s.gateway) ? 6 : undefined
      if (!gatewayFamily) problems.push(`gateway: "${s.gateway}" is not an IPv4 or IPv6 address`)
      else if (family && gatewayFamily !== family) problems.push(`gateway: ${s.gateway} is IPv${gatewayFamily} but the address is IPv${family}: use a router of the same family`)
      else if (s.gateway === s.address) problems.push('gateway: the gateway (router) cannot be the box\'s own address')
      else if (family === 4 && s.address && s.prefix !== undefined && s.prefix >= 8 && s.prefix <= 32) {
        const mask = 2 ** (32 - s.prefix)
        if (Math.floor(ipv4Number(s.gateway) / mask) !== Math.floor(ipv4Number(s.address) / mask)) problems.push(`gateway: ${s.gateway} is not in ${s.address}/${s.prefix}: the router must be on the box's own network (check the prefix)`)
      }
    }
  } else {
    for (const field of ['address', 'prefix', 'gateway'] as const) {
      if (s[field] !== undefined && s[field] !== '') problems.push(`${field}: with DHCP the box gets its address, prefix and gateway from the DHCP server: leave ${field} empty or choose static`)
    }
  }

  if (s.dns.length > MAX_SERVERS) problems.push(`dns: at most ${MAX_SERVERS} DNS servers (${s.dns.length} given)`)
  s.dns.forEach((server, i) => {
    if (!isIPv4(server) && !isIPv6(server)) problems.push(`dns[${i}]: "${server}" is not an IP address: DNS servers are given by address, e.g. 192.168.1.1`)
    else if (unusableAddress(server)) problems.push(`dns[${i}]: ${server} ${unusableAddress(server)}`)
  })
  if (new Set(s.dns).size !== s.dns.length) problems.push('dns: a server is listed twice')
  if (s.ntp.length > MAX_SERVERS) problems.push(`ntp: at most ${MAX_SERVERS} NTP servers (${s.ntp.length} given)`)
  s.ntp.forEach((server, i) => {
    if (!isIPv4(server) && !isIPv6(server) && !HOST_NAME.test(server)) problems.push(`ntp[${i}]: "${server}" is neither a host name (e.g. ntp.example.com) nor an IP address`)
  })
  if (new Set(s.ntp).size !== s.ntp.length) problems.push('ntp: a server is listed twice')

  if (s.httpProxy !== undefined && s.httpProxy !== '') {
    const problem = proxyProblem(s.httpProxy)
    if (problem) problems.push(`httpProxy: ${problem}`)
  }
  return problems
}

function proxyProblem(value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return `"${value.slice(0, 80)}" is not a URL: write it as http://proxy.example.com:3128`
  }
  if (url.protocol !== 'http:') return `use an http:// proxy URL (the box speaks HTTP CONNECT to the proxy), not ${url.protocol}//`
  if (url.username || url.password) return 'proxy credentials are not supported here: ask for a proxy rule that lets the box through by its address'
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) return 'give only the proxy\'s host and port, e.g. http://proxy.example.com:3128'
  const host = url.hostname.replace(/^\[|\]$/g, '')
  if (!isIPv4(host) && !isIPv6(host) && !HOST_NAME.test(host)) return `"${url.hostname}" is not a host name or address`
  return undefined
}

/**
 * One spelling per address, so comparisons hold (2001:0DB8::0020 is 2001:db8::20; a request's local address
 * `::ffff:192.0.2.1` is 192.0.2.1). Anything that is not an IP address is returned lower-cased.
 */
export function canonicalAddress(value: string): string {
  const plain = value.trim().toLowerCase().replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1')
  if (isIPv6(plain)) return new URL(`http://[${plain}]/`).hostname.slice(1, -1)
  return plain
}

/** Checked settings as stored: canonical addresses, the proxy as scheme, host and port only. */
export function normaliseNetworkSettings(s: NetworkSettings): NetworkSettings {
  const proxy = s.httpProxy ? new URL(s.httpProxy) : undefined
  const out: NetworkSettings = {
    mode: s.mode,
    dns: s.dns.map(canonicalAddress),
    ntp: s.ntp.map((server) => canonicalAddress(server)),
    ...(s.mode === 'static' && s.address ? { address: canonicalAddress(s.address), prefix: s.prefix } : {}),
    ...(s.mode === 'static' && s.gateway ? { gateway: canonicalAddress(s.gateway) } : {}),
    ...(proxy ? { httpProxy: `http://${proxy.host}` } : {}),
  }
  return out
}

/** Whether going from `before` to `after` can cut the installer off the setup page, so it is applied as a trial. */
export function needsTrial(before: NetworkSettings, after: NetworkSettings): boolean {
  if (after.mode !== 'static') return false
  return before.mode !== 'static' || before.address !== after.address || before.prefix !== after.prefix || before.gateway !== after.gateway
}

/** Names of the rendered files, relative to the pending folder; the apply script accepts only these. */
export const RENDERED_FILES = {
  network: '10-pbxgw.network',
  timesyncd: 'timesyncd.conf.d/pbxgw.conf',
  proxy: 'proxy.env',
} as const

const HEADER = '# Written by the PBX presence gateway (setup page, Network); applied by pbxgw-network-apply. Do not edit.'

/** The files for systemd-networkd, systemd-timesyncd and the proxy environment, from checked settings. */
export function renderNetworkFiles(s: NetworkSettings): Record<(typeof RENDERED_FILES)[keyof typeof RENDERED_FILES], string> {
  const network = [
    HEADER,
    '[Match]',
    // Wired interfaces only: Wi-Fi needs credentials the setup page does not take.
    'Name=en* eth*',
    '',
    '[Network]',
    ...(s.mode === 'static'
      ? ['DHCP=no', `Address=${s.address}/${s.prefix}`, ...(s.gateway ? [`Gateway=${s.gateway}`] : [])]
      : ['DHCP=yes']),
    ...s.dns.map((server) => `DNS=${server}`),
    // mDNS is avahi's job (it announces <hostname>.local); resolved's responder on the same port would clash.
    'MulticastDNS=no',
    'LinkLocalAddressing=ipv6',
    ...(s.mode === 'dhcp' && s.dns.length > 0 ? ['', '[DHCPv4]', 'UseDNS=no'] : []),
    ...(s.mode === 'dhcp' && s.ntp.length > 0 ? [...(s.dns.length > 0 ? [] : ['', '[DHCPv4]']), 'UseNTP=no'] : []),
    '',
  ].join('\n')
  const timesyncd = [HEADER, '[Time]', ...(s.ntp.length > 0 ? [`NTP=${s.ntp.join(' ')}`] : []), ''].join('\n')
  const proxy = [HEADER, ...(s.httpProxy ? ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'].map((name) => `${name}=${s.httpProxy}`) : []), ''].join('\n')
  return { [RENDERED_FILES.network]: network, [RENDERED_FILES.timesyncd]: timesyncd, [RENDERED_FILES.proxy]: proxy } as Record<(typeof RENDERED_FILES)[keyof typeof RENDERED_FILES], string>
}
