import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { api, describeError, setCsrfToken, whenSignedOut, type SessionState } from './api.js'
import { Connectors, EnrollWizard, FactoryReset, Login, PasswordSetup, StatusPage } from './pages.js'
import { NetworkPage } from './network.js'
import { UpdatePage } from './update.js'
import { Alert } from './ui.js'
import './style.css'

const PAGES = [
  { hash: '#/enrol', label: 'Connect to cloud' },
  { hash: '#/connectors', label: 'PBX connectors' },
  { hash: '#/status', label: 'Status' },
  { hash: '#/network', label: 'Network' },
  { hash: '#/update', label: 'Software update' },
  { hash: '#/reset', label: 'Factory reset' },
] as const

function useHash(): string {
  const [hash, setHash] = useState(location.hash || '#/enrol')
  useEffect(() => {
    const on = () => setHash(location.hash || '#/enrol')
    addEventListener('hashchange', on)
    return () => removeEventListener('hashchange', on)
  }, [])
  return hash
}

function App() {
  const [session, setSession] = useState<SessionState | undefined>()
  const [error, setError] = useState<string | undefined>()
  const [notice, setNotice] = useState<string | undefined>()
  const hash = useHash()
  const refresh = () => api<SessionState>('GET', '/session').then((s) => { setCsrfToken(s.csrfToken); setSession(s); setError(undefined) }, (e: unknown) => setError(describeError(e).message))
  useEffect(() => {
    whenSignedOut(() => { setNotice('Your session ended: sign in again.'); void refresh() })
    void refresh()
  }, [])
  const signedIn = (token: string) => { setCsrfToken(token); setNotice(undefined); void refresh() }
  const signOut = async () => { await api('POST', '/logout').catch(() => undefined); setCsrfToken(undefined); void refresh() }
  let page
  if (!session) page = error ? <Alert kind="error">{error}</Alert> : <p>Loading…</p>
  else if (!session.passwordSet) page = <PasswordSetup session={session} onDone={signedIn} />
  else if (!session.signedIn) page = <Login onDone={signedIn} notice={notice} />
  else if (hash === '#/connectors') page = <Connectors />
  else if (hash === '#/status') page = <StatusPage />
  else if (hash === '#/network') page = <NetworkPage />
  else if (hash === '#/update') page = <UpdatePage />
  else if (hash === '#/reset') page = <FactoryReset onDone={() => { location.hash = '#/enrol'; void refresh() }} />
  else page = <EnrollWizard />
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header>
        <h1>PBX presence gateway</h1>
        {session?.signedIn ? (
          <nav aria-label="Sections">
            <ul>
              {PAGES.map((p) => <li key={p.hash}><a href={p.hash} aria-current={hash === p.hash || (p.hash === '#/enrol' && !PAGES.some((q) => q.hash === hash)) ? 'page' : undefined}>{p.label}</a></li>)}
              <li><button type="button" class="link" onClick={() => void signOut()}>Sign out</button></li>
            </ul>
          </nav>
        ) : null}
      </header>
      <main id="main" key={session?.signedIn ? hash : 'out'}>{page}</main>
      {session ? (
        <footer>
          <p>This page's certificate (SHA-256), check it matches your browser's: <code class="fingerprint">{session.certificateFingerprint}</code></p>
          <p class="muted">Version {session.version}</p>
        </footer>
      ) : null}
    </>
  )
}

const root = document.getElementById('app')
if (root) render(<App />, root)
