import type { DirectoryUser } from '../graph/types.js'

export type AddressKind = 'mail' | 'userPrincipalName' | 'proxyAddress'

export type AddressMatch =
  | { kind: 'matched'; userId: string; via: AddressKind }
  | { kind: 'ambiguous'; userIds: string[] }
  | { kind: 'unmatched' }

/**
 * Every address an imported Entra user answers to: mail, userPrincipalName and the SMTP entries of proxyAddresses
 * ('SMTP:' primary or 'smtp:' alias; the prefix compares case-insensitively). Addresses compare case-insensitively.
 * Pure and in memory, so mapping a 5,000-person PBX directory costs no Graph request.
 */
export class AddressIndex {
  readonly #owners = new Map<string, Map<string, AddressKind>>()
  readonly #users = new Map<string, DirectoryUser>()

  constructor(users: readonly DirectoryUser[]) {
    for (const user of users) {
      const id = user.id.toLowerCase()
      this.#users.set(id, user)
      if (user.mail) this.#add(user.mail, id, 'mail')
      this.#add(user.userPrincipalName, id, 'userPrincipalName')
      for (const proxy of user.proxyAddresses) {
        const match = /^smtp:(.+)$/i.exec(proxy.trim())
        if (match?.[1]) this.#add(match[1], id, 'proxyAddress')
      }
    }
  }

  get size(): number {
    return this.#users.size
  }

  user(id: string): DirectoryUser | undefined {
    return this.#users.get(id.toLowerCase())
  }

  users(): IterableIterator<DirectoryUser> {
    return this.#users.values()
  }

  resolve(email: string): AddressMatch {
    const owners = this.#owners.get(email.trim().toLowerCase())
    if (!owners || owners.size === 0) return { kind: 'unmatched' }
    if (owners.size > 1) return { kind: 'ambiguous', userIds: [...owners.keys()].sort() }
    const [[userId, via]] = [...owners.entries()] as [[string, AddressKind]]
    return { kind: 'matched', userId, via }
  }

  /** Addresses that more than one Entra user answers to (e.g. an alias left on a leaver's successor). */
  ambiguousAddresses(): Array<{ address: string; userIds: string[] }> {
    const out: Array<{ address: string; userIds: string[] }> = []
    for (const [address, owners] of this.#owners) if (owners.size > 1) out.push({ address, userIds: [...owners.keys()].sort() })
    return out.sort((a, b) => a.address.localeCompare(b.address))
  }

  #add(address: string, userId: string, kind: AddressKind): void {
    const key = address.trim().toLowerCase()
    if (key === '') return
    let owners = this.#owners.get(key)
    if (!owners) {
      owners = new Map()
      this.#owners.set(key, owners)
    }
    // The strongest reason per user: mail, then UPN, then proxy address.
    if (!owners.has(userId)) owners.set(userId, kind)
  }
}

/** The import's $filter: every configured criterion, combined with AND (research §5: endsWith needs advanced queries). */
export function buildUserFilter(criteria: { enabledOnly: boolean; domains: readonly string[]; departments: readonly string[] }): string | undefined {
  const quote = (text: string) => `'${text.replace(/'/g, "''")}'`
  const parts: string[] = []
  if (criteria.enabledOnly) parts.push('accountEnabled eq true')
  if (criteria.domains.length) {
    const domains = criteria.domains.map((d) => `@${d.replace(/^@/, '').toLowerCase()}`)
    parts.push(`(${domains.flatMap((d) => [`endswith(mail,${quote(d)})`, `endswith(userPrincipalName,${quote(d)})`]).join(' or ')})`)
  }
  if (criteria.departments.length) parts.push(`department in (${criteria.departments.map(quote).join(',')})`)
  return parts.length ? parts.join(' and ') : undefined
}
