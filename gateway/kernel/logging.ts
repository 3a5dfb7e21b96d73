import pino, { type Logger, type LoggerOptions } from 'pino'

/** Keys whose values never reach a log, at any depth (compared lower-case, without - and _). */
const SECRET_KEYS = new Set([
  'password', 'passwd', 'passphrase', 'secret', 'token', 'apikey', 'authorization', 'proxyauthorization', 'cookie', 'setcookie',
  'clientstate', 'csrf', 'privatekey', 'sealkey', 'setupcode', 'code_verifier', 'codeverifier',
])
/** ...nor those of keys ending in one of these: relayPassword, appPassword, clientSecret, apiToken, refreshToken, keyPem, csrPem... */
const SECRET_SUFFIXES = ['password', 'secret', 'token', 'pem', 'privatekey', 'cookie']
/** An enrollment or setup code (XXXX-XXXX-XXXX-XXXX): `code` is otherwise an error code and stays readable. */
const ONE_TIME_CODE = /^(?=.*[0-9])[A-Za-z0-9]{4}(-?[A-Za-z0-9]{4}){3}$/

/** fast-redact paths, applied after the serializers (fastify's req/res): the headers a request may carry. */
export const REDACT_PATHS = [
  'headers.authorization', 'headers.cookie', 'headers["set-cookie"]', 'headers["proxy-authorization"]',
  '*.headers.authorization', '*.headers.cookie', '*.headers["set-cookie"]', '*.headers["proxy-authorization"]',
]

const CENSOR = '[redacted]'
const MAX_DEPTH = 10

function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[-_]/g, '')
  return SECRET_KEYS.has(k) || SECRET_SUFFIXES.some((suffix) => k.endsWith(suffix))
}

/**
 * Secrets inside free text: credentials in URLs (postgres://user:pw@host, http://user:pw@proxy), secret query
 * parameters, bearer/basic credentials and PEM private keys.
 */
export function redactText(text: string): string {
  if (text.includes('PRIVATE KEY-----')) return text.replace(/-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?(-----END \1PRIVATE KEY-----|$)/g, CENSOR)
  return text
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@/]*@/gi, `$1:${CENSOR}@`)
    .replace(/([?&](?:code|token|access_token|refresh_token|id_token|client_secret|password|secret|validationToken|state|sig)=)[^&#\s"']*/gi, `$1${CENSOR}`)
    .replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${CENSOR}`)
}

function plain(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

/**
 * A copy of a log object with every secret replaced, at any depth. Errors are serialized here (as pino would)
 * so their message, stack and own fields are cleaned too; other class instances (fastify's request and reply)
 * are left to their serializers, which never include headers or bodies.
 */
export function redactSecrets(value: unknown, key = '', depth = 0): unknown {
  if (typeof value === 'string') {
    if (key !== '' && isSecretKey(key)) return CENSOR
    if (key === 'code' && ONE_TIME_CODE.test(value)) return CENSOR
    return redactText(value)
  }
  if (typeof value !== 'object' || value === null) return value
  if (key !== '' && isSecretKey(key)) return CENSOR
  if (depth >= MAX_DEPTH) return value
  // `err` at the top is pino's error key: its serializer (below) cleans it; pino would print other errors as {}.
  if (value instanceof Error) return key === 'err' && depth === 1 ? value : serializeError(value)
  if (Array.isArray(value)) return value.map((item) => redactSecrets(item, '', depth + 1))
  if (!plain(value)) return value
  const copy: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) copy[k] = redactSecrets(v, k, depth + 1)
  return copy
}

/** pino's error serializer, then the same cleaning: messages and stacks we build may quote a URL or a header. */
function serializeError(err: Error): unknown {
  return redactSecrets({ ...pino.stdSerializers.err(err) })
}

const formatters: NonNullable<LoggerOptions['formatters']> = {
  log: (object) => redactSecrets(object) as Record<string, unknown>,
  bindings: (bindings) => redactSecrets(bindings) as pino.Bindings,
}

/**
 * pino applies the bindings formatter to the root logger only: child bindings ({connector: config}) are cleaned
 * here. Children inherit from the root through the prototype chain, so every descendant uses this `child`.
 */
function redactChildBindings(logger: Logger): Logger {
  const child = logger.child
  const redacting = function (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions): unknown {
    return Reflect.apply(child, this, [redactSecrets(bindings), options])
  }
  logger.child = redacting as unknown as Logger['child']
  return logger
}

/** Human-readable logs when asked (LOG_PRETTY=1) or when a person is watching (a terminal), JSON otherwise. */
export function prettyByDefault(): boolean {
  return process.env.LOG_PRETTY === '1' || (process.env.LOG_PRETTY !== '0' && process.stdout.isTTY === true)
}

export function createLogger(options: { level?: string; name: string; pretty?: boolean; destination?: pino.DestinationStream }): Logger {
  const base: LoggerOptions = {
    name: options.name,
    level: options.level ?? 'info',
    formatters,
    serializers: { err: serializeError },
    // The message itself: one built from an error may quote a URL with its password.
    hooks: { logMethod(args, method) { method.apply(this, args.map((arg) => (typeof arg === 'string' ? redactText(arg) : arg)) as Parameters<typeof method>) } },
    redact: { paths: REDACT_PATHS, censor: CENSOR },
  }
  if (options.destination) return redactChildBindings(pino(base, options.destination))
  if (options.pretty) {
    return redactChildBindings(pino({ ...base, transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } }))
  }
  return redactChildBindings(pino(base))
}
