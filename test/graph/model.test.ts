import t from 'tap'
import {
  aggregatePresence,
  parseIsoDuration,
  type PresenceSession,
} from '../../cloud-relay/graph-sim/presence-model.js'
import { fromGraphError, fromTokenError, parseRetryAfter } from '../../cloud-relay/src/graph/graph-errors.js'

t.test('ISO-8601 durations', async (t) => {
  t.equal(parseIsoDuration('PT5M'), 300_000)
  t.equal(parseIsoDuration('PT4H'), 14_400_000)
  t.equal(parseIsoDuration('PT1H30M'), 5_400_000)
  t.equal(parseIsoDuration('P1D'), 86_400_000)
  t.equal(parseIsoDuration('PT90S'), 90_000)
  for (const bad of ['P', 'PT', '5M', 'PT5', 'P1Y', 'PT-5M', '']) t.equal(parseIsoDuration(bad), undefined, bad)
})

t.test('aggregation order: DoNotDisturb > Busy > Available > BeRightBack > Away', async (t) => {
  const session = (availability: string, activity: string, setAt = 0): PresenceSession => ({
    owner: { kind: 'teams' },
    availability,
    activity,
    setAt,
    lastRefresh: setAt,
    expiresAt: Number.POSITIVE_INFINITY,
  })
  const top = (...s: PresenceSession[]): string => {
    const p = aggregatePresence(s, undefined, true, 0)
    return `${p.availability}/${p.activity}`
  }
  t.equal(top(session('Away', 'Away'), session('BeRightBack', 'BeRightBack')), 'BeRightBack/BeRightBack')
  t.equal(top(session('Away', 'Away'), session('Available', 'Available')), 'Available/Available')
  t.equal(top(session('Available', 'Available'), session('Busy', 'InAMeeting')), 'Busy/InAMeeting')
  t.equal(top(session('Busy', 'InACall'), session('DoNotDisturb', 'Presenting')), 'DoNotDisturb/Presenting')
  t.equal(top(session('Busy', 'Busy', 1), session('Busy', 'Busy', 2)), 'Busy/Busy')
  t.equal(top(), 'Offline/Offline')
  t.same(aggregatePresence([], undefined, false, 0), { availability: 'PresenceUnknown', activity: 'PresenceUnknown' })
})

t.test('Retry-After: seconds, fractional seconds, HTTP date', async (t) => {
  const now = Date.parse('2025-01-01T00:00:00Z')
  t.equal(parseRetryAfter('3', now), 3000)
  t.equal(parseRetryAfter('2.128', now), 2128)
  t.equal(parseRetryAfter('Wed, 01 Jan 2025 00:00:10 GMT', now), 10_000)
  t.equal(parseRetryAfter(null, now), undefined)
  t.equal(parseRetryAfter('soon', now), undefined)
})

t.test('error mapping without a network', async (t) => {
  const ctx = { tenantId: 't', clientId: 'c', defaultRetryAfterMs: 5000, nowMs: 0 }
  const graphErr = (statusCode: number, code: string): Error =>
    Object.assign(new Error('m'), { statusCode, code, headers: new Headers() })
  t.equal(fromGraphError(graphErr(429, 'TooManyRequests'), 'op', ctx).retryAfterMs, 5000, 'default when no Retry-After')
  t.equal(fromGraphError(graphErr(-1, 'TypeError'), 'op', ctx).code, 'GRAPH_UNAVAILABLE')
  t.equal(fromGraphError(graphErr(502, 'BadGateway'), 'op', ctx).code, 'GRAPH_UNAVAILABLE')
  t.equal(fromGraphError(graphErr(409, 'Conflict'), 'op', ctx).code, 'GRAPH_REQUEST')
  t.equal(fromGraphError(new Error('boom'), 'op', ctx).code, 'GRAPH_UNAVAILABLE')
  const msal = (errorCode: string, errorMessage: string, extra: Record<string, unknown> = {}): Error =>
    Object.assign(new Error(errorMessage), { errorCode, errorMessage, ...extra })
  t.match(fromTokenError(msal('invalid_client', 'AADSTS7000222: expired'), ctx).message, /expired/)
  t.match(fromTokenError(msal('invalid_grant', 'AADSTS65001: consent'), ctx).message, /Grant admin consent/)
  t.equal(fromTokenError(msal('temporarily_unavailable', 'x', { status: 503 }), ctx).code, 'GRAPH_UNAVAILABLE')
  t.equal(fromTokenError(msal('network_error', 'x'), ctx).code, 'GRAPH_UNAVAILABLE')
})
