import type { ConsolePrincipal } from './console-auth.js'
import { ConsoleError } from './console-errors.js'

/** What the role check sees of a request, after validation (params and query are typed and coerced). */
export interface AccessRequest {
  method: string
  /** The route's pattern, e.g. /api/v1/gateways/:id/telemetry. */
  url: string
  params: unknown
  /** Mutable: a tenant admin's unscoped list queries are narrowed to its tenant. */
  query: unknown
}

export interface ConsoleAccessDeps {
  tenantOfGateway(gatewayId: string): string | undefined | Promise<string | undefined>
  tenantOfPerson(personId: number): Promise<string | undefined>
}

const READS = new Set(['GET', 'HEAD'])
/** Lists that take ?tenant=: a tenant admin sees only its own. */
const TENANT_QUERY_ROUTES = new Set(['/api/v1/people', '/api/v1/events', '/api/v1/gateways'])
/** People and Graph settings: operators read them, only the tenant's admin changes them. */
const TENANT_SETTINGS = /^\/api\/v1\/(people\/|tenants\/:tenant\/(imports|mappings|service-accounts))/
/** The seat limit is what the operator sells: a tenant admin reads it (GET /console/tenants) but never changes it. */
const OPERATOR_ONLY_CHANGES = /^\/api\/v1\/tenants\/:tenant\/seats$/

const record = (value: unknown): Record<string, unknown> => (value && typeof value === 'object' ? value as Record<string, unknown> : {})

/**
 * Role checks for console sessions (the bearer token is the relay's own admin and passes):
 * - operator: every tenant; manages gateways, accounts and seat limits; reads people and Graph settings but does not
 *   change them;
 * - tenant admin: everything of its one tenant but its seat limit, nothing of the others, no fleet-wide routes.
 */
export function createConsoleAccess(deps: ConsoleAccessDeps) {
  return async function authorize(principal: ConsolePrincipal, request: AccessRequest): Promise<void> {
    const { account } = principal
    const params = record(request.params)
    if (account.role === 'operator') {
      if (!READS.has(request.method) && TENANT_SETTINGS.test(request.url)) {
        throw new ConsoleError('CONSOLE_FORBIDDEN', 'Operators can read people and Graph settings but not change them: a tenant admin of that tenant makes this change.')
      }
      return
    }
    const own = account.tenantId
    const other = (tenant: string | undefined) => tenant === undefined || tenant !== own
    if (!READS.has(request.method) && OPERATOR_ONLY_CHANGES.test(request.url)) {
      throw new ConsoleError('CONSOLE_FORBIDDEN', 'Only an operator changes a tenant\'s seat limit: ask an operator to raise it.')
    }
    const refuse = (what: string) => new ConsoleError('CONSOLE_FORBIDDEN', `Your account manages tenant ${own} only: ${what} belongs to another tenant or to the whole fleet; ask an operator.`)
    if (request.url.startsWith('/api/v1/console/accounts')) throw new ConsoleError('CONSOLE_FORBIDDEN', 'Only an operator manages console accounts: ask an operator.')
    if (request.url.startsWith('/api/v1/console/') || request.url === '/api/v1/openapi.json') return
    let scoped = false
    if (typeof params['tenant'] === 'string') {
      if (other(params['tenant'])) throw refuse(`tenant ${params['tenant']}`)
      scoped = true
    }
    if (typeof params['id'] === 'string' && request.url.startsWith('/api/v1/gateways/')) {
      if (other(await deps.tenantOfGateway(params['id']))) throw refuse(`gateway ${params['id']}`)
      scoped = true
    }
    if (typeof params['personId'] === 'number') {
      if (other(await deps.tenantOfPerson(params['personId']))) throw refuse(`person ${params['personId']}`)
      scoped = true
    }
    if (TENANT_QUERY_ROUTES.has(request.url)) {
      const query = record(request.query)
      if (typeof query['tenant'] === 'string' && other(query['tenant'])) throw refuse(`tenant ${query['tenant']}`)
      if (request.query && typeof request.query === 'object' && own) (request.query as Record<string, unknown>)['tenant'] = own
      scoped = true
    }
    if (!scoped) throw refuse('this page')
  }
}
