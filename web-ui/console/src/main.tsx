import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { api, setCsrfToken, whenSignedOut, type SessionInfo, type Tenant } from './api.js'
import { AccountsPage } from './accounts.js'
import { SignIn } from './auth.js'
import { EventsPage } from './events.js'
import { GatewayDetailPage, GatewaysPage } from './gateways.js'
import { connectLive, disconnectLive, onLiveStatus } from './live.js'
import { MappingPage } from './mapping.js'
import { GraphPage, PeoplePage, PersonPage } from './people.js'
import { RolloutPage, UpdatesPage } from './updates.js'
import { Alert, message } from './ui.js'
import './app.css'

function useRoute(): string {
  const [route, setRoute] = useState(location.hash.replace(/^#/, '') || '/gateways')
  useEffect(() => {
    const on = () => setRoute(location.hash.replace(/^#/, '') || '/gateways')
    window.addEventListener('hashchange', on)
    return () => window.removeEventListener('hashchange', on)
  }, [])
  // Moving focus to the new page's heading tells keyboard and screen reader users that the page changed.
  useEffect(() => { document.getElementById('page-title')?.focus() }, [route])
  return route
}

function App() {
  const [session, setSession] = useState<SessionInfo>()
  const [error, setError] = useState('')
  const [tenants, setTenants] = useState<Tenant[]>([])
  const [live, setLive] = useState(false)
  const route = useRoute()

  const signedIn = (s: SessionInfo) => {
    setCsrfToken(s.csrfToken)
    setSession(s)
  }
  useEffect(() => {
    whenSignedOut(() => { setCsrfToken(null); setSession({ firstRun: false, account: null, csrfToken: null }) })
    api<SessionInfo>('GET', '/console/session').then(signedIn, (err) => setError(message(err)))
    return onLiveStatus(setLive)
  }, [])
  const account = session?.account
  useEffect(() => {
    if (!account) return disconnectLive()
    connectLive()
    api<{ tenants: Tenant[] }>('GET', '/console/tenants').then((r) => setTenants(r.tenants), (err) => setError(message(err)))
  }, [account?.id])

  if (!session) return <main id="main"><h1>PBX presence: cloud console</h1><Alert>{error}</Alert>{!error && <p>Loading…</p>}</main>
  if (!account) return <SignIn firstRun={session.firstRun} onSignedIn={signedIn} />

  const signOut = async () => {
    try {
      await api('POST', '/console/logout')
    } finally {
      setCsrfToken(null)
      setSession({ firstRun: false, account: null, csrfToken: null })
    }
  }
  const [, section, param] = route.split('/')
  let page
  if (section === 'gateways' && param) page = <GatewayDetailPage id={decodeURIComponent(param)} />
  else if (section === 'people' && param) page = <PersonPage id={Number(param)} />
  else if (section === 'people') page = <PeoplePage account={account} tenants={tenants} />
  else if (section === 'mapping') page = <MappingPage account={account} tenants={tenants} />
  else if (section === 'graph') page = <GraphPage account={account} tenants={tenants} />
  else if (section === 'events') page = <EventsPage account={account} tenants={tenants} />
  else if (section === 'accounts') page = <AccountsPage account={account} tenants={tenants} />
  else if (section === 'updates' && param) page = <RolloutPage id={decodeURIComponent(param)} />
  else if (section === 'updates') page = <UpdatesPage tenants={tenants} />
  else page = <GatewaysPage account={account} tenants={tenants} />
  const nav = [['gateways', 'Gateways'], ['people', 'People'], ['mapping', 'Mapping'], ['graph', 'Graph'], ['events', 'Event log'], ...(account.role === 'operator' ? [['updates', 'Updates'] as const] : []), account.role === 'operator' ? ['accounts', 'Accounts'] : ['accounts', 'Your account']] as const
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('page-title')?.focus() }}>Skip to content</a>
      <header class="top">
        <p class="brand">PBX presence console</p>
        <nav aria-label="Main">
          <ul>{nav.map(([key, label]) => <li key={key}><a href={`#/${key}`} aria-current={section === key || (!section && key === 'gateways') ? 'page' : undefined}>{label}</a></li>)}</ul>
        </nav>
        <div class="who">
          <span class={live ? 'live on' : 'live'} role="status">{live ? 'Live' : 'Reconnecting…'}</span>
          <span>{account.username} ({account.role === 'operator' ? 'operator' : `admin of ${account.tenantId}`})</span>
          <button type="button" onClick={signOut}>Sign out</button>
        </div>
      </header>
      <main id="main">{page}</main>
    </>
  )
}

const root = document.getElementById('app')
if (root) render(<App />, root)
