import { useEffect, useState } from 'preact/hooks'
import { api, q, type Account, type EventLine, type EventsPage, type Explanation, type MappingReport, type Person, type ServiceAccounts, type SignIn, type SyncMode, type Tenant } from './api.js'
import { onLive } from './live.js'
import { Alert, Page, Select, message, when } from './ui.js'

const MODES: Array<{ value: SyncMode; label: string }> = [
  { value: 'full', label: 'Full (both directions)' },
  { value: 'telephony', label: 'Telephony (PBX → Teams only)' },
  { value: 'off', label: 'Off' },
]

export function useTenantChoice(account: Account, tenants: Tenant[]): [string, (t: string) => void] {
  const [tenant, setTenant] = useState(account.tenantId ?? tenants[0]?.id ?? '')
  useEffect(() => { if (!tenant && tenants[0]) setTenant(tenants[0].id) }, [tenants])
  return [tenant, setTenant]
}

export function PeoplePage({ account, tenants }: { account: Account; tenants: Tenant[] }) {
  const [tenant, setTenant] = useTenantChoice(account, tenants)
  const [people, setPeople] = useState<Person[]>()
  const [mapping, setMapping] = useState<MappingReport>()
  const [error, setError] = useState('')
  const [saved, setSaved] = useState('')
  const canEdit = account.role === 'tenant-admin'
  const info = tenants.find((t) => t.id === tenant)
  useEffect(() => {
    if (!tenant) return
    api<{ people: Person[] }>('GET', `/people${q({ tenant })}`).then((r) => setPeople(r.people), (err) => setError(message(err)))
    api<MappingReport>('GET', `/tenants/${encodeURIComponent(tenant)}/mapping`).then(setMapping, () => setMapping(undefined))
  }, [tenant])
  const setMode = async (person: Person, syncMode: string) => {
    setError('')
    setSaved('')
    try {
      await api('PUT', `/people/${person.id}/sync`, { syncMode })
      setPeople((list) => list?.map((p) => (p.id === person.id ? { ...p, syncMode: syncMode as SyncMode } : p)))
      setSaved(`Sync for ${person.displayName} is now ${syncMode}.`)
    } catch (err) {
      setError(message(err))
    }
  }
  const endpointsOf = (personId: number) => mapping?.endpoints.filter((e) => e.personId === personId) ?? []
  return (
    <Page title="People">
      {account.role === 'operator' && <Select label="Tenant" value={tenant} onChange={setTenant} options={tenants.map((t) => ({ value: t.id, label: t.name }))} />}
      {info && <p class="seats">Seats: <strong>{info.seats.synced}</strong> synced of {info.seats.limit ?? 'unlimited'} ({info.seats.people} people known)</p>}
      {!canEdit && <p class="muted">Operators see people read-only; a tenant admin changes sync settings.</p>}
      <Alert>{error}</Alert>
      {saved && <p role="status">{saved}</p>}
      {people && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">People of {tenant}</caption>
            <thead><tr><th scope="col">Person</th><th scope="col">Sync</th><th scope="col">Extensions</th><th scope="col">Timeline</th></tr></thead>
            <tbody>
              {people.map((p) => (
                <tr key={p.id}>
                  <th scope="row">{p.displayName}<div class="muted">{p.email}</div></th>
                  <td><Select label={`Sync mode of ${p.displayName}`} hideLabel value={p.syncMode} disabled={!canEdit} onChange={(v) => void setMode(p, v)} options={MODES} /></td>
                  <td>{endpointsOf(p.id).length === 0 ? 'none mapped' : endpointsOf(p.id).map((e) => <div key={`${e.gatewayId}/${e.connectorId}/${e.endpointId}`}>{e.endpointId} on {e.gatewayId}/{e.connectorId} ({e.via === 'manual' ? 'manual' : 'auto-mapped'})</div>)}</td>
                  <td><a href={`#/people/${p.id}`}>Why? / timeline<span class="visually-hidden"> of {p.displayName}</span></a></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {mapping && mapping.endpoints.some((e) => e.personId === null) && (
        <section class="card">
          <h2>Extensions without a person</h2>
          <p><a href="#/mapping">Map extensions by hand on the Mapping page</a></p>
          <ul>{mapping.endpoints.filter((e) => e.personId === null).map((e) => <li key={`${e.gatewayId}/${e.connectorId}/${e.endpointId}`}>{e.endpointId} {e.name} on {e.gatewayId}/{e.connectorId}{e.email ? ` (${e.email})` : ' (no e-mail: map by hand)'}</li>)}</ul>
        </section>
      )}
    </Page>
  )
}

export function PersonPage({ id }: { id: number }) {
  const [why, setWhy] = useState<Explanation>()
  const [events, setEvents] = useState<EventLine[]>([])
  const [error, setError] = useState('')
  useEffect(() => {
    const loadWhy = () => api<Explanation>('GET', `/people/${id}/why`).then(setWhy, (err) => setError(message(err)))
    void loadWhy()
    api<EventsPage>('GET', `/people/${id}/events${q({ limit: 100 })}`).then((r) => setEvents(r.events), (err) => setError(message(err)))
    return onLive((m) => {
      if (m.type === 'event' && m.event.personId === id) {
        setEvents((list) => (list.some((e) => e.id === m.event.id) ? list : [m.event, ...list]))
        void loadWhy()
      }
    })
  }, [id])
  const name = why?.person.displayName ?? `person ${id}`
  const teams = why?.teams
  return (
    <Page title={`Why is ${name} shown like this?`}>
      <p><a href="#/people">← People</a></p>
      <Alert>{error}</Alert>
      {why && (
        <section class="card" aria-labelledby="why-now">
          <h2 id="why-now">Right now</h2>
          <ul class="summary" data-testid="why-summary">{why.summary.map((s, i) => <li key={i}>{s}</li>)}</ul>
          <dl class="facts">
            <dt>Teams shows</dt><dd>{teams?.observed ? `${teams.observed.availability} / ${teams.observed.activity} (seen ${when(teams.observed.at)})` : 'not observed yet'}</dd>
            <dt>Our Teams session</dt><dd>{teams?.ourSession ? `${teams.ourSession.availability} / ${teams.ourSession.activity} because ${teams.ourSession.reason}; expires ${when(teams.ourSession.expiresAt)}` : 'none'}</dd>
            <dt>Sync mode</dt><dd>{why.person.syncMode}</dd>
          </dl>
          <h3>Extensions</h3>
          <ul>{why.endpoints.map((e) => <li key={`${e.gatewayId}/${e.connectorId}/${e.endpointId}`}>{e.endpointId} ({e.name}) on {e.gatewayId}/{e.connectorId}: {e.state}{e.dnd ? `, DND on (set by ${e.dndOwner})` : ''}{e.stale ? ', not current (gateway offline)' : ''}: {e.cause}</li>)}</ul>
        </section>
      )}
      <section aria-labelledby="timeline">
        <h2 id="timeline">Timeline (updates live)</h2>
        {events.length === 0 ? <p>No events for {name} yet.</p> : (
          <ol class="timeline" data-testid="timeline">
            {events.map((e) => <li key={e.id}><time dateTime={e.at}>{when(e.at)}</time> <span class="kind">{e.kind}</span> {e.message}</li>)}
          </ol>
        )}
      </section>
    </Page>
  )
}

export function GraphPage({ account, tenants }: { account: Account; tenants: Tenant[] }) {
  const [tenant, setTenant] = useTenantChoice(account, tenants)
  const [accounts, setAccounts] = useState<ServiceAccounts>()
  const [signIn, setSignIn] = useState<SignIn>()
  const [error, setError] = useState('')
  const info = tenants.find((t) => t.id === tenant)
  const base = `/tenants/${encodeURIComponent(tenant)}/service-accounts`
  const load = () => api<ServiceAccounts>('GET', base).then(setAccounts, (err) => { setAccounts(undefined); setError(message(err)) })
  useEffect(() => { if (tenant && info?.graph.configured) void load() }, [tenant, info?.graph.configured])
  useEffect(() => {
    if (!signIn || signIn.state !== 'waiting') return
    const t = window.setTimeout(() => {
      api<SignIn>('GET', `${base}/sign-ins/${encodeURIComponent(signIn.id)}`).then((s) => { setSignIn(s); if (s.state === 'signed-in') void load() }, (err) => setError(message(err)))
    }, 2000)
    return () => window.clearTimeout(t)
  }, [signIn])
  const start = async () => {
    setError('')
    try {
      setSignIn(await api<SignIn>('POST', `${base}/sign-in`))
    } catch (err) {
      setError(message(err))
    }
  }
  return (
    <Page title="Microsoft Graph">
      {account.role === 'operator' && <Select label="Tenant" value={tenant} onChange={setTenant} options={tenants.map((t) => ({ value: t.id, label: t.name }))} />}
      <Alert>{error}</Alert>
      {info && (
        <section class="card" aria-labelledby="app-cred">
          <h2 id="app-cred">App credentials</h2>
          {info.graph.configured
            ? <p>Configured: app {info.graph.clientId} with a client {info.graph.credential} (the secret stays on the relay).</p>
            : <p>Not configured: add tenants[].graph (tenantId, clientId and a secret or certificate) to the relay config and restart the relay.</p>}
        </section>
      )}
      {info?.graph.configured && (
        <section class="card" aria-labelledby="svc">
          <h2 id="svc">Sync service accounts</h2>
          <p>Service accounts subscribe to Teams presence; people without a working subscription are polled.</p>
          {accounts && (accounts.accounts.length === 0 ? <p>No service account yet.</p> : (
            <ul>{accounts.accounts.map((a) => <li key={a.id}>{a.username}: {a.state === 'ok' ? 'signed in' : `needs a sign-in (${a.reason ?? ''}) ${a.action ?? ''}`}</li>)}</ul>
          ))}
          {account.role === 'tenant-admin' && <button type="button" onClick={start}>Add a service account (device sign-in)</button>}
          {signIn && (
            <div class="card code-card" role="status" aria-live="polite">
              {signIn.state === 'waiting' && <p>Open <a href={signIn.verificationUri} target="_blank" rel="noreferrer">{signIn.verificationUri}</a> and enter the code <code class="code">{signIn.userCode}</code>, then sign in with the service account (until {when(signIn.expiresAt)}).</p>}
              {signIn.state === 'signed-in' && <p>Signed in: the account now carries presence subscriptions.</p>}
              {(signIn.state === 'failed' || signIn.state === 'cancelled') && <p role="alert">The sign-in did not complete: {signIn.error ?? signIn.state}. Start it again.</p>}
            </div>
          )}
          <h3>Subscription health</h3>
          {accounts && (
            <>
              <p>{accounts.polled} people polled (no subscription).</p>
              {accounts.shards.length > 0 && (
                <div class="table-wrap"><table>
                  <thead><tr><th scope="col">Account</th><th scope="col">Subscription</th><th scope="col">People</th><th scope="col">Expires</th></tr></thead>
                  <tbody>{accounts.shards.map((s, i) => <tr key={i}><td>{s.accountId}</td><td>{s.subscriptionId ?? 'none (being created)'}</td><td>{s.members}</td><td>{when(s.expiresAt)}</td></tr>)}</tbody>
                </table></div>
              )}
            </>
          )}
        </section>
      )}
    </Page>
  )
}
