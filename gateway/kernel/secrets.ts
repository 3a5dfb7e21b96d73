import { readFileSync, statSync } from 'node:fs'
import { Type, type StringOptions, type TSchema, type TString } from '@sinclair/typebox'

/**
 * Secrets in a config file. A field made with `Secret()` takes the secret itself, or a reference to where it lives:
 *   "clientSecret": {"env": "GRAPH_CLIENT_SECRET"}       an environment variable
 *   "clientSecret": {"file": "/etc/pbx-relay/graph-secret"}  a file readable by the service's user only (chmod 600)
 * A field made with `SecretFile()` names a file holding key material (a PEM key): it must not be readable by others.
 * The loader resolves references before the schema check, so the rest of the program only ever sees strings.
 */
export function Secret(options: StringOptions = {}): TString {
  return Type.String({ ...options, secret: true })
}

export function SecretFile(options: StringOptions = {}): TString {
  return Type.String({ ...options, secretFile: true })
}

/** How to make a secret, named in every "too short" or "placeholder" problem. */
export const MAKE_SECRET = 'make one with "openssl rand -base64 32"'

/** The examples' placeholders: a service must never start with one. */
const PLACEHOLDER = /change[-_ ]?me/i

export type Env = Readonly<Record<string, string | undefined>>

interface SchemaNode {
  type?: unknown
  properties?: Record<string, SchemaNode>
  items?: SchemaNode
  anyOf?: SchemaNode[]
  secret?: boolean
  secretFile?: boolean
  minLength?: number
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Calls `visit` for every value at a schema node marked `secret` or `secretFile`, with its JSON pointer. */
function walk(schema: SchemaNode, value: unknown, path: string, visit: (node: SchemaNode, value: unknown, path: string, set: (v: unknown) => void) => void, set: (v: unknown) => void): void {
  if (schema.secret === true || schema.secretFile === true) {
    visit(schema, value, path, set)
    return
  }
  if (schema.properties && isRecord(value)) {
    for (const [key, child] of Object.entries(schema.properties)) {
      if (key in value) walk(child, value[key], `${path}/${key}`, visit, (v) => { value[key] = v })
    }
  } else if (schema.items && Array.isArray(value)) {
    value.forEach((item, index) => walk(schema.items!, item, `${path}/${index}`, visit, (v) => { value[index] = v }))
  } else if (schema.anyOf && isRecord(value)) {
    for (const member of schema.anyOf) walk(member, value, path, visit, set)
  }
}

/** A file must belong to the service alone: group or others may not read it. Returns a problem, or undefined. */
function fileModeProblem(path: string, file: string): string | undefined {
  if (process.platform === 'win32') return undefined
  let mode: number
  try {
    const stat = statSync(file)
    if (!stat.isFile()) return `${path}: ${file} is not a file`
    mode = stat.mode
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    return `${path}: cannot read ${file}: ${(err as Error).message}`
  }
  if ((mode & 0o077) === 0) return undefined
  return `${path}: the secret file ${file} can be read by other users (mode ${(mode & 0o777).toString(8)}): run "chmod 600 ${file}" and start again`
}

function readSecretFile(path: string, file: string): { value?: string; problem?: string } {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    return { problem: `${path}: cannot read the secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }
  }
  const problem = fileModeProblem(path, file)
  if (problem) return { problem }
  // Editors and `echo` add a final newline; it is never part of the secret.
  const value = text.replace(/\r?\n$/, '')
  if (value === '') return { problem: `${path}: the secret file ${file} is empty` }
  return { value }
}

/**
 * One secret field: a string, {"env": NAME} or {"file": PATH}. Answers the secret, or a problem (placeholder,
 * too short, variable unset, file unreadable or readable by others). Values of other types are left to the schema.
 */
export function resolveSecret(path: string, value: unknown, env: Env, minLength?: number): { value: unknown; problem?: string } {
  let secret = value
  let from = ''
  if (isRecord(value)) {
    const keys = Object.keys(value)
    if (keys.length === 1 && typeof value['env'] === 'string') {
      const name = value['env']
      secret = env[name]
      from = ` (from the environment variable ${name})`
      if (secret === undefined || secret === '') {
        return { value, problem: `${path}: the environment variable ${name} is not set or empty: set it in the service's environment (e.g. an EnvironmentFile in its systemd unit)` }
      }
    } else if (keys.length === 1 && typeof value['file'] === 'string') {
      const file = value['file']
      const read = readSecretFile(path, file)
      if (read.problem !== undefined) return { value, problem: read.problem }
      secret = read.value
      from = ` (from ${file})`
    } else {
      return { value, problem: `${path}: give the secret as a string, {"env": "VARIABLE"} or {"file": "/path/to/file"}` }
    }
  }
  if (typeof secret !== 'string') return { value: secret }
  if (PLACEHOLDER.test(secret)) return { value: secret, problem: `${path}: still the example's placeholder${from}: replace it with a real secret (${MAKE_SECRET})` }
  if (minLength !== undefined && secret.length < minLength) {
    return { value: secret, problem: `${path}: too short${from}: ${secret.length} characters, at least ${minLength} are needed; ${MAKE_SECRET}` }
  }
  return { value: secret }
}

export interface SecretCheck {
  /** The input with every {"env"} / {"file"} reference replaced by the secret; a deep copy when anything changed. */
  input: unknown
  /** Problems in words, one per field, each starting with its JSON pointer. */
  problems: string[]
  /** JSON pointers already reported here: the schema check's own message for them would only repeat it. */
  reported: Set<string>
}

/**
 * Resolves secret references in a raw config (before defaults and the schema check), and checks every secret:
 * no placeholder, long enough, secret files not readable by others. Every problem is listed, none thrown.
 */
export function resolveSecrets(schema: TSchema, raw: unknown, env: Env): SecretCheck {
  const input: unknown = structuredClone(raw)
  const problems: string[] = []
  const reported = new Set<string>()
  const report = (path: string, problem: string) => {
    problems.push(problem)
    reported.add(path)
  }
  walk(schema as SchemaNode, input, '', (node, value, path, set) => {
    if (node.secretFile === true) {
      const problem = typeof value === 'string' && value !== '' ? fileModeProblem(path, value) : undefined
      if (problem) report(path, problem)
      return
    }
    const resolved = resolveSecret(path, value, env, node.minLength)
    if (resolved.problem !== undefined) report(path, resolved.problem)
    else if (resolved.value !== value) set(resolved.value)
  }, () => undefined)
  return { input, problems, reported }
}

/** Drops the schema check's problems for fields `resolveSecrets` already explained. */
export function withoutReported(problems: string[], reported: ReadonlySet<string>): string[] {
  return problems.filter((problem) => ![...reported].some((path) => problem.startsWith(`${path}: `)))
}
