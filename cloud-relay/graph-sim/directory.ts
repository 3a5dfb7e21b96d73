/**
 * The simulated directory's query side: Graph's $filter for users (a subset, parsed and evaluated here), the
 * advanced-query rule (ConsistencyLevel: eventual + $count=true), and group membership (direct and transitive).
 * Pure functions over the simulator's users and groups; graph-simulator.ts turns the outcomes into HTTP answers.
 * Sources: learn "Advanced query capabilities on Microsoft Entra ID objects" (aad-advanced-queries, and its
 * per-property table includes/filter-directory-objects.md in microsoft-graph-docs-contrib); research §5.
 */
import type { SimulatedGroup, SimulatedUser } from './simulator-types.js'

/** A query Graph refuses: HTTP status, Graph error code and Graph's wording. */
export class DirectoryQueryError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

type Literal = string | boolean | number | null

export type FilterNode =
  | { kind: 'and' | 'or'; left: FilterNode; right: FilterNode }
  | { kind: 'not'; operand: FilterNode }
  | { kind: 'compare'; op: 'eq' | 'ne'; property: string; value: Literal }
  | { kind: 'in'; property: string; values: Literal[] }
  | { kind: 'function'; name: 'startswith' | 'endswith'; property: string; value: string }

/**
 * Filterable user properties and which operators work without advanced query parameters (per the docs' table:
 * accountEnabled, department, displayName, mail, userPrincipalName, id, jobTitle: eq/in by default; companyName
 * and officeLocation need advanced queries even for eq; startsWith by default where listed; endsWith only with
 * advanced parameters and only on mail, otherMails, userPrincipalName, proxyAddresses).
 */
const USER_PROPERTIES: Record<string, { name: keyof SimulatedUser; eqDefault: boolean; startsWith: boolean; endsWith: boolean }> = {
  id: { name: 'id', eqDefault: true, startsWith: false, endsWith: false },
  accountenabled: { name: 'accountEnabled', eqDefault: true, startsWith: false, endsWith: false },
  department: { name: 'department', eqDefault: true, startsWith: true, endsWith: false },
  displayname: { name: 'displayName', eqDefault: true, startsWith: true, endsWith: false },
  mail: { name: 'mail', eqDefault: true, startsWith: true, endsWith: true },
  userprincipalname: { name: 'userPrincipalName', eqDefault: true, startsWith: true, endsWith: true },
  jobtitle: { name: 'jobTitle', eqDefault: true, startsWith: false, endsWith: false },
  companyname: { name: 'companyName', eqDefault: false, startsWith: true, endsWith: false },
  officelocation: { name: 'officeLocation', eqDefault: false, startsWith: true, endsWith: false },
}

const ADVANCED_HINT =
  'Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information'

// ----- parsing ---------------------------------------------------------------------------------------------

interface Token {
  type: 'word' | 'string' | 'punct'
  text: string
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < text.length) {
    const c = text[i] ?? ''
    if (/\s/.test(c)) {
      i++
    } else if (c === "'") {
      let value = ''
      i++
      for (;;) {
        if (i >= text.length) throw invalidFilter(text)
        if (text[i] === "'") {
          if (text[i + 1] === "'") {
            value += "'"
            i += 2
            continue
          }
          i++
          break
        }
        value += text[i]
        i++
      }
      tokens.push({ type: 'string', text: value })
    } else if (c === '(' || c === ')' || c === ',') {
      tokens.push({ type: 'punct', text: c })
      i++
    } else {
      const match = /^[A-Za-z0-9_.@$\-/:]+/.exec(text.slice(i))
      if (match === null) throw invalidFilter(text)
      tokens.push({ type: 'word', text: match[0] })
      i += match[0].length
    }
  }
  return tokens
}

function invalidFilter(text: string): DirectoryQueryError {
  return new DirectoryQueryError(400, 'BadRequest', `Invalid filter clause: syntax error in '${text}'.`)
}

/** Parses the supported subset: eq, ne, in, startswith, endswith, not, and, or, parentheses. */
export function parseFilter(text: string): FilterNode {
  const tokens = tokenize(text)
  let pos = 0
  const peek = (): Token | undefined => tokens[pos]
  const next = (): Token => {
    const token = tokens[pos++]
    if (token === undefined) throw invalidFilter(text)
    return token
  }
  const expectPunct = (p: string): void => {
    const token = next()
    if (token.type !== 'punct' || token.text !== p) throw invalidFilter(text)
  }
  const isWord = (token: Token | undefined, word: string): boolean =>
    token?.type === 'word' && token.text.toLowerCase() === word
  const literal = (): Literal => {
    const token = next()
    if (token.type === 'string') return token.text
    if (token.type !== 'word') throw invalidFilter(text)
    const lower = token.text.toLowerCase()
    if (lower === 'true') return true
    if (lower === 'false') return false
    if (lower === 'null') return null
    const n = Number(token.text)
    if (Number.isFinite(n)) return n
    throw invalidFilter(text)
  }
  const property = (): string => {
    const token = next()
    if (token.type !== 'word') throw invalidFilter(text)
    if (token.text.includes('/')) {
      // Lambda operators on collections (proxyAddresses/any(...)) are real Graph syntax the simulator lacks.
      throw new DirectoryQueryError(400, 'Request_UnsupportedQuery', `The simulator does not support the filter clause on '${token.text}'.`)
    }
    return token.text
  }
  const primary = (): FilterNode => {
    const token = peek()
    if (token?.type === 'punct' && token.text === '(') {
      next()
      const inner = orExpr()
      expectPunct(')')
      return inner
    }
    if (isWord(token, 'not')) {
      next()
      return { kind: 'not', operand: primary() }
    }
    if ((isWord(token, 'startswith') || isWord(token, 'endswith')) && tokens[pos + 1]?.text === '(') {
      const name = next().text.toLowerCase() as 'startswith' | 'endswith'
      expectPunct('(')
      const prop = property()
      expectPunct(',')
      const value = literal()
      expectPunct(')')
      if (typeof value !== 'string') throw invalidFilter(text)
      return { kind: 'function', name, property: prop, value }
    }
    const prop = property()
    const op = next()
    const opText = op.text.toLowerCase()
    if (op.type === 'word' && (opText === 'eq' || opText === 'ne')) return { kind: 'compare', op: opText, property: prop, value: literal() }
    if (op.type === 'word' && opText === 'in') {
      expectPunct('(')
      const values: Literal[] = [literal()]
      while (peek()?.text === ',') {
        next()
        values.push(literal())
      }
      expectPunct(')')
      return { kind: 'in', property: prop, values }
    }
    throw invalidFilter(text)
  }
  const andExpr = (): FilterNode => {
    let left = primary()
    while (isWord(peek(), 'and')) {
      next()
      left = { kind: 'and', left, right: primary() }
    }
    return left
  }
  const orExpr = (): FilterNode => {
    let left = andExpr()
    while (isWord(peek(), 'or')) {
      next()
      left = { kind: 'or', left, right: andExpr() }
    }
    return left
  }
  const tree = orExpr()
  if (pos !== tokens.length) throw invalidFilter(text)
  return tree
}

function propertyOf(name: string): (typeof USER_PROPERTIES)[string] {
  const known = USER_PROPERTIES[name.toLowerCase()]
  if (known === undefined) {
    throw new DirectoryQueryError(400, 'Request_UnsupportedQuery', `Unsupported or invalid query filter clause specified for property '${name}' of resource 'User'.`)
  }
  return known
}

/**
 * Checks the filter against what Graph supports and returns the first construct that needs advanced query
 * parameters (undefined when it works by default). Throws for what Graph refuses even with them.
 */
export function advancedRequirement(node: FilterNode): string | undefined {
  switch (node.kind) {
    case 'and':
    case 'or':
      return advancedRequirement(node.left) ?? advancedRequirement(node.right)
    case 'not':
      return advancedRequirement(node.operand) ?? "Operator 'not'"
    case 'compare': {
      const prop = propertyOf(node.property)
      if (node.op === 'ne') return "Operator 'ne'"
      if (node.value === null) return `Filtering '${prop.name}' on null`
      return prop.eqDefault ? undefined : `Property '${prop.name}'`
    }
    case 'in':
      return propertyOf(node.property).eqDefault ? undefined : `Property '${propertyOf(node.property).name}'`
    case 'function': {
      const prop = propertyOf(node.property)
      if (node.name === 'endswith') {
        if (!prop.endsWith) {
          throw new DirectoryQueryError(400, 'Request_UnsupportedQuery', `Unsupported or invalid query filter clause specified for property '${prop.name}' of resource 'User'.`)
        }
        return "Operator 'endsWith'"
      }
      if (!prop.startsWith) {
        throw new DirectoryQueryError(400, 'Request_UnsupportedQuery', `Unsupported or invalid query filter clause specified for property '${prop.name}' of resource 'User'.`)
      }
      return prop.eqDefault ? undefined : `Property '${prop.name}'`
    }
  }
}

/** Directory string comparisons are case-insensitive (assumption, matches Entra's behaviour for mail and UPN). */
function same(a: unknown, b: Literal): boolean {
  if (typeof a === 'string' && typeof b === 'string') return a.toLowerCase() === b.toLowerCase()
  return (a ?? null) === b
}

export function matchesFilter(node: FilterNode, user: SimulatedUser): boolean {
  switch (node.kind) {
    case 'and':
      return matchesFilter(node.left, user) && matchesFilter(node.right, user)
    case 'or':
      return matchesFilter(node.left, user) || matchesFilter(node.right, user)
    case 'not':
      return !matchesFilter(node.operand, user)
    case 'compare': {
      const value = user[propertyOf(node.property).name]
      return node.op === 'eq' ? same(value, node.value) : !same(value, node.value)
    }
    case 'in': {
      const value = user[propertyOf(node.property).name]
      return node.values.some((v) => same(value, v))
    }
    case 'function': {
      const value = user[propertyOf(node.property).name]
      if (typeof value !== 'string') return false
      const v = value.toLowerCase()
      const needle = node.value.toLowerCase()
      return node.name === 'startswith' ? v.startsWith(needle) : v.endsWith(needle)
    }
  }
}

/** ConsistencyLevel: eventual and $count=true, both (the docs' "advanced query parameters"). */
export function hasAdvancedParameters(consistencyLevel: string | undefined, count: string | undefined): boolean {
  return consistencyLevel?.trim().toLowerCase() === 'eventual' && count?.trim().toLowerCase() === 'true'
}

/** Filters users by a $filter text, enforcing the advanced-query rule. */
export function filterUsers(
  users: readonly SimulatedUser[],
  filterText: string | undefined,
  advanced: boolean,
): SimulatedUser[] {
  if (filterText === undefined || filterText.trim() === '') return [...users]
  const tree = parseFilter(filterText)
  const needs = advancedRequirement(tree)
  if (needs !== undefined && !advanced) {
    throw new DirectoryQueryError(400, 'Request_UnsupportedQuery', `${needs} is not supported because the required parameters might be missing. ${ADVANCED_HINT}`)
  }
  return users.filter((u) => matchesFilter(tree, u))
}

/** A directory object as it appears in a members list. */
export type MemberObject = { kind: 'user'; user: SimulatedUser } | { kind: 'group'; group: SimulatedGroup }

/** Direct members (users and nested groups) in the order they were added; unknown ids are skipped. */
export function directMembers(
  group: SimulatedGroup,
  users: ReadonlyMap<string, SimulatedUser>,
  groups: ReadonlyMap<string, SimulatedGroup>,
): MemberObject[] {
  const out: MemberObject[] = []
  for (const id of group.memberIds) {
    const user = users.get(id)
    if (user !== undefined) out.push({ kind: 'user', user })
    else {
      const nested = groups.get(id)
      if (nested !== undefined) out.push({ kind: 'group', group: nested })
    }
  }
  return out
}

/** Members of the group and of every nested group, each once (nested groups themselves included, as in Graph). */
export function transitiveMembers(
  group: SimulatedGroup,
  users: ReadonlyMap<string, SimulatedUser>,
  groups: ReadonlyMap<string, SimulatedGroup>,
): MemberObject[] {
  const seen = new Set<string>([group.id])
  const out: MemberObject[] = []
  const walk = (g: SimulatedGroup): void => {
    for (const member of directMembers(g, users, groups)) {
      const id = member.kind === 'user' ? member.user.id : member.group.id
      if (seen.has(id)) continue
      seen.add(id)
      out.push(member)
      if (member.kind === 'group') walk(member.group)
    }
  }
  walk(group)
  return out
}
