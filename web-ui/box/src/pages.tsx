import { useEffect, useRef, useState } from 'preact/hooks'
import {
  api, describeError, setCsrfToken, type ConnectionTest, type ConnectorType, type ConnectorView, type DiagnosticCheck, type EnrollmentState,
  type LogLine, type SessionState, type Status,
} from './api.js'
import { SchemaForm } from './schema-form.js'
import { Alert, Badge, Field, since, time } from './ui.js'

/** Moves focus to the page's heading when it appears, so keyboard and screen-reader users start at the top. */
export function PageHeading(props: { children: string }) {
  const ref = useRef<HTMLHeadingElement>(null)
  useEffect(() => ref.current?.focus(), [])
  return <h2 tabIndex={-1} ref={ref}>{props.children}</h2>
}

function usePoll<T>(path: string, everyMs: number): { data: T | undefined; error: string | undefined; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const [tick, setTick] = useState(0)
  useEffect(() => {
    let alive = true
    const load = () => api<T>('GET', path).then((d) => { if (alive) { setData(d); setError(undefined) } }, (e: unknown) => { if (alive) setError(describeError(e).message) })
    void load()
    const timer = setInterval(load, everyMs)
    return () => { alive = false; clearInterval(timer) }
  }, [path, everyMs, tick])
  return { data, error, reload: () => setTick((t) => t + 1) }
}

export function PasswordSetup(props: { session: SessionState; onDone: (token: string) => void }) {
  const [setupCode, setSetupCode] = useState('')
  const [password, setPassword] = useState('')
  const [confirm, setConfirm] = useState('')
  const [error, setError] = useState<{ field: string; message: string } | undefined>()
  const [busy, setBusy] = useState(false)
  const submit = async (e: Event) => {
    e.preventDefault()
    if (!setupCode.trim()) return setError({ field: 'setupCode', message: 'Enter the setup code shown on the box\'s console: it proves you have the box in hand.' })
    if (password.length < props.session.minPasswordLength) return setError({ field: 'password', message: `Choose a password of at least ${props.session.minPasswordLength} characters.` })
    if (password !== confirm) return setError({ field: 'confirm', message: 'The two passwords differ: type the same password twice.' })
    setBusy(true)
    try {
      const res = await api<{ csrfToken?: string }>('POST', '/setup', { password, setupCode })
      props.onDone(res.csrfToken ?? '')
    } catch (err) {
      const e2 = describeError(err)
      setError({ field: e2.field ?? 'password', message: e2.message })
    } finally {
      setBusy(false)
    }
  }
  return (
    <section class="card narrow">
      <PageHeading>Welcome: set the admin password</PageHeading>
      <p>This box has no password yet. Choose one now: you will need it for every visit to this page. There is no default password.</p>
      <form onSubmit={submit} noValidate>
        <Field label="Setup code" hint="Shown on the box's console (a screen plugged into the box, or journalctl -u pbx-gateway) each time it starts, like 7KQX-M3DW-9TPA. It works once." error={error?.field === 'setupCode' ? error.message : undefined}>
          {(a) => <input {...a} name="setupCode" type="text" autoComplete="off" autoCapitalize="characters" spellcheck={false} value={setupCode} onInput={(e) => setSetupCode(e.currentTarget.value)} />}
        </Field>
        <Field label="New admin password" hint={`At least ${props.session.minPasswordLength} characters.`} error={error?.field === 'password' ? error.message : undefined}>
          {(a) => <input {...a} name="password" type="password" autoComplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />}
        </Field>
        <Field label="Type it again" error={error?.field === 'confirm' ? error.message : undefined}>
          {(a) => <input {...a} name="confirm" type="password" autoComplete="new-password" value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} />}
        </Field>
        <button type="submit" disabled={busy}>{busy ? 'Saving…' : 'Set password and continue'}</button>
      </form>
    </section>
  )
}

export function Login(props: { onDone: (token: string) => void; notice?: string | undefined }) {
  const [password, setPassword] = useState('')
  const [error, setError] = useState<string | undefined>()
  const [busy, setBusy] = useState(false)
  const submit = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    try {
      const res = await api<{ csrfToken?: string }>('POST', '/login', { password })
      props.onDone(res.csrfToken ?? '')
    } catch (err) {
      setError(describeError(err).message)
      setPassword('')
    } finally {
      setBusy(false)
    }
  }
  return (
    <section class="card narrow">
      <PageHeading>Sign in</PageHeading>
      {props.notice ? <Alert kind="info">{props.notice}</Alert> : null}
      <form onSubmit={submit} noValidate>
        <Field label="Admin password" error={error}>
          {(a) => <input {...a} name="password" type="password" autoComplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />}
        </Field>
        <button type="submit" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </section>
  )
}

type Step = { label: string; state: 'done' | 'active' | 'waiting' | 'failed'; detail?: string }

export function EnrollWizard() {
  const [state, setState] = useState<EnrollmentState | undefined>()
  const [code, setCode] = useState('')
  const [relayUrl, setRelayUrl] = useState('')
  const [pin, setPin] = useState('')
  const [error, setError] = useState<{ field: string | undefined; message: string } | undefined>()
  const [busy, setBusy] = useState(false)
  const [again, setAgain] = useState(false)
  const status = usePoll<Status>('/status', 1500)
  useEffect(() => { void api<EnrollmentState>('GET', '/enrollment').then(setState, (e: unknown) => setError({ field: undefined, message: describeError(e).message })) }, [])
  const submit = async (e: Event) => {
    e.preventDefault()
    setError(undefined)
    if (!code.trim()) return setError({ field: 'code', message: 'Paste the enrollment code from the cloud console (Gateways → Create enrollment code).' })
    setBusy(true)
    try {
      const body = { code: code.trim(), ...(relayUrl.trim() ? { relayUrl: relayUrl.trim() } : {}), ...(pin.trim() ? { caFingerprint: pin.trim() } : {}) }
      setState(await api<EnrollmentState>('POST', '/enrollment', body))
      setAgain(false)
      setCode('')
    } catch (err) {
      const e2 = describeError(err)
      setError({ field: e2.field, message: e2.message })
    } finally {
      setBusy(false)
    }
  }
  const enrolled = state?.enrolled === true && !again
  const tunnel = status.data?.tunnel
  const steps: Step[] = [
    { label: 'Enrolled', state: enrolled ? 'done' : busy ? 'active' : error ? 'failed' : 'waiting', ...(enrolled ? { detail: `Gateway ${state?.gatewayId ?? ''}, tenant ${state?.tenantId ?? ''}` } : error ? { detail: error.message } : {}) },
    { label: 'Connecting to the relay', state: !enrolled ? 'waiting' : tunnel?.connected ? 'done' : tunnel?.lastError ? 'failed' : 'active', ...(enrolled && !tunnel?.connected && tunnel?.lastError ? { detail: tunnel.lastError } : {}) },
    { label: 'Connected', state: enrolled && tunnel?.connected ? 'done' : 'waiting', ...(enrolled && tunnel?.connected && tunnel.transportUrl ? { detail: `Through ${tunnel.transportUrl}` } : {}) },
  ]
  return (
    <section class="card">
      <PageHeading>Connect this box to the cloud</PageHeading>
      {!enrolled ? (
        <form onSubmit={submit} noValidate>
          <p>In the cloud console, open Gateways, create an enrollment code for this box and paste it here. A code works once.</p>
          <Field label="Enrollment code" hint="Like ABCD-EFGH-JKMN-PQRS." error={error?.field === 'code' || (error && !error.field) ? error.message : undefined}>
            {(a) => <input {...a} name="code" autoComplete="off" spellcheck={false} value={code} onInput={(e) => setCode(e.currentTarget.value)} />}
          </Field>
          {!state?.configuredRelayUrl ? (
            <Field label="Relay address" hint="The https address shown next to the code in the console." error={error?.field === 'relayUrl' ? error.message : undefined}>
              {(a) => <input {...a} name="relayUrl" type="url" placeholder="https://relay.example.net" value={relayUrl} onInput={(e) => setRelayUrl(e.currentTarget.value)} />}
            </Field>
          ) : <p class="hint">Relay: {state.configuredRelayUrl}</p>}
          {!state?.configuredPin ? (
            <Field label="Relay certificate pin (optional)" hint="The SHA-256 pin shown in the console; needed when the relay uses its own CA." error={error?.field === 'caFingerprint' ? error.message : undefined}>
              {(a) => <input {...a} name="caFingerprint" autoComplete="off" spellcheck={false} value={pin} onInput={(e) => setPin(e.currentTarget.value)} />}
            </Field>
          ) : null}
          <button type="submit" disabled={busy}>{busy ? 'Enrolling…' : 'Enrol this box'}</button>
        </form>
      ) : (
        <p>This box is enrolled as <strong>{state?.gatewayId}</strong> (tenant {state?.tenantId}). <button type="button" class="link" onClick={() => setAgain(true)}>Enrol again with a new code</button></p>
      )}
      <h3>Progress</h3>
      <ol class="steps" aria-live="polite">
        {steps.map((s) => (
          <li key={s.label} class={`step step-${s.state}`}>
            <span class="step-label">{s.label}</span> <Badge state={s.state}>{{ done: 'done', active: 'in progress', waiting: 'waiting', failed: 'problem' }[s.state]}</Badge>
            {s.detail ? <p class="step-detail">{s.detail}</p> : null}
          </li>
        ))}
      </ol>
      {enrolled && tunnel?.connected ? <Alert kind="ok">The box is connected. Next: <a href="#/connectors">add the PBX</a>.</Alert> : null}
    </section>
  )
}

export function Connectors() {
  const [types, setTypes] = useState<ConnectorType[]>([])
  const [list, setList] = useState<ConnectorView[]>([])
  const [editing, setEditing] = useState<{ id: string; type: string; config: Record<string, unknown>; secretsSet: string[]; isNew: boolean } | undefined>()
  const [error, setError] = useState<{ field: string | undefined; message: string } | undefined>()
  const [result, setResult] = useState<ConnectionTest | undefined>()
  const [busy, setBusy] = useState<'' | 'test' | 'save'>('')
  const [notice, setNotice] = useState<string | undefined>()
  const load = () => api<{ connectors: ConnectorView[] }>('GET', '/connectors').then((r) => setList(r.connectors), (e: unknown) => setError({ field: undefined, message: describeError(e).message }))
  useEffect(() => {
    void api<{ types: ConnectorType[] }>('GET', '/connector-types').then((r) => setTypes(r.types), (e: unknown) => setError({ field: undefined, message: describeError(e).message }))
    void load()
  }, [])
  const schema = types.find((t) => t.type === editing?.type)?.schema
  const startNew = () => { setEditing({ id: '', type: types[0]?.type ?? 'osbiz', config: {}, secretsSet: [], isNew: true }); setResult(undefined); setError(undefined); setNotice(undefined) }
  const body = () => ({ type: editing?.type ?? '', config: editing?.config ?? {} })
  const checkId = (): boolean => {
    if (!editing || /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(editing.id)) return true
    setError({ field: 'id', message: 'Give the connector a short name: letters, digits, - _ . (e.g. osbiz-main).' })
    return false
  }
  const test = async () => {
    if (!editing || !checkId()) return
    setBusy('test'); setResult(undefined); setError(undefined)
    try {
      setResult(await api<ConnectionTest>('POST', '/connectors/test', { id: editing.id, ...body() }))
    } catch (err) {
      const e2 = describeError(err); setError({ field: e2.field, message: e2.message })
    } finally { setBusy('') }
  }
  const save = async (e: Event) => {
    e.preventDefault()
    if (!editing || !checkId()) return
    setBusy('save'); setError(undefined)
    try {
      await api('PUT', `/connectors/${encodeURIComponent(editing.id)}`, body())
      setNotice(`Saved "${editing.id}": the box connects to the PBX now.`)
      setEditing(undefined); setResult(undefined)
      await load()
    } catch (err) {
      const e2 = describeError(err); setError({ field: e2.field, message: e2.message })
    } finally { setBusy('') }
  }
  const remove = async (id: string) => {
    if (!window.confirm(`Remove connector "${id}"? The box stops watching this PBX.`)) return
    try {
      await api('DELETE', `/connectors/${encodeURIComponent(id)}`)
      setNotice(`Removed "${id}".`)
      await load()
    } catch (err) { setError({ field: undefined, message: describeError(err).message }) }
  }
  return (
    <section class="card">
      <PageHeading>PBX connectors</PageHeading>
      {notice ? <Alert kind="ok">{notice}</Alert> : null}
      {error && !error.field && !editing ? <Alert kind="error">{error.message}</Alert> : null}
      {list.length === 0 ? <p>No PBX yet: add one.</p> : (
        <ul class="connector-list">
          {list.map((c) => (
            <li key={c.id}>
              <span><strong>{c.id}</strong> <span class="muted">{c.type}, {String(c.config.host ?? '')}{c.config.port !== undefined ? `:${String(c.config.port)}` : ''}</span> {c.source === 'file' ? <Badge state="info">config file</Badge> : null}</span>
              {c.source === 'setup-page' ? (
                <span class="actions">
                  <button type="button" class="secondary" onClick={() => { setEditing({ id: c.id, type: c.type, config: { ...c.config }, secretsSet: c.secretsSet, isNew: false }); setResult(undefined); setError(undefined); setNotice(undefined) }}>Edit {c.id}</button>
                  <button type="button" class="danger" onClick={() => void remove(c.id)}>Remove {c.id}</button>
                </span>
              ) : null}
            </li>
          ))}
        </ul>
      )}
      {!editing ? <button type="button" onClick={startNew}>Add a PBX</button> : (
        <form onSubmit={save} noValidate class="connector-form">
          <h3>{editing.isNew ? 'Add a PBX' : `Edit ${editing.id}`}</h3>
          <Field label="PBX type" error={error?.field === 'type' ? error.message : undefined}>
            {(a) => (
              <select {...a} name="type" value={editing.type} disabled={!editing.isNew} onChange={(e) => setEditing({ ...editing, type: e.currentTarget.value, config: {}, secretsSet: [] })}>
                {types.map((t) => <option key={t.type} value={t.type}>{t.type}</option>)}
              </select>
            )}
          </Field>
          <Field label="Connector name" hint="Short and unique on this box, e.g. osbiz-main." error={error?.field === 'id' ? error.message : undefined}>
            {(a) => <input {...a} name="id" value={editing.id} disabled={!editing.isNew} onInput={(e) => setEditing({ ...editing, id: e.currentTarget.value })} />}
          </Field>
          {schema ? <SchemaForm schema={schema} value={editing.config} secretsSet={editing.secretsSet} onChange={(config) => setEditing({ ...editing, config })} skip={['id', 'type']} errorField={error?.field} errorMessage={error?.message} idPrefix="cfg" /> : null}
          {error && (!error.field || !schema?.properties?.[error.field]) && error.field !== 'id' && error.field !== 'type' ? <Alert kind="error">{error.message}</Alert> : null}
          <div aria-live="polite" class="test-result">
            {busy === 'test' ? <p>Connecting to the PBX (up to 15 s)…</p> : null}
            {result ? (
              <Alert kind={result.ok ? 'ok' : 'error'}>
                <p>{result.message}</p>
                {result.ok && result.sampleExtensions.length > 0 ? <p>Sample extensions: {result.sampleExtensions.join(', ')}</p> : null}
              </Alert>
            ) : null}
          </div>
          <div class="buttons">
            <button type="button" class="secondary" disabled={busy !== ''} onClick={() => void test()}>Test connection</button>
            <button type="submit" disabled={busy !== ''}>{busy === 'save' ? 'Saving…' : 'Save'}</button>
            <button type="button" class="secondary" onClick={() => { setEditing(undefined); setError(undefined); setResult(undefined) }}>Cancel</button>
          </div>
        </form>
      )}
    </section>
  )
}

export function StatusPage() {
  const status = usePoll<Status>('/status', 2000)
  const [lines, setLines] = useState<LogLine[]>([])
  const [checks, setChecks] = useState<DiagnosticCheck[] | undefined>()
  const [running, setRunning] = useState(false)
  const [diagError, setDiagError] = useState<string | undefined>()
  useEffect(() => {
    void api<{ lines: LogLine[] }>('GET', '/logs').then((r) => setLines(r.lines))
    const source = new EventSource('/api/logs/stream')
    source.onmessage = (e: MessageEvent<string>) => setLines((prev) => [...prev.slice(-299), JSON.parse(e.data) as LogLine])
    return () => source.close()
  }, [])
  const diagnose = async () => {
    setRunning(true); setDiagError(undefined)
    try { setChecks((await api<{ checks: DiagnosticCheck[] }>('POST', '/diagnostics')).checks) } catch (err) { setDiagError(describeError(err).message) } finally { setRunning(false) }
  }
  const s = status.data
  return (
    <>
      <section class="card">
        <PageHeading>Status</PageHeading>
        {status.error ? <Alert kind="error">{status.error}</Alert> : null}
        <h3>Cloud tunnel</h3>
        {s ? (
          <dl class="facts">
            <dt>State</dt><dd><Badge state={s.tunnel.connected ? 'connected' : 'offline'}>{s.tunnel.connected ? 'connected' : s.tunnel.enrolled ? 'not connected' : 'not enrolled'}</Badge></dd>
            <dt>Gateway</dt><dd>{s.tunnel.enrolled ? s.tunnel.gatewayId : <a href="#/enrol">Enrol this box</a>}</dd>
            <dt>Through</dt><dd>{s.tunnel.transportUrl ?? '—'}</dd>
            {s.tunnel.lastError ? <><dt>Last error</dt><dd class="error-text">{s.tunnel.lastError}</dd></> : null}
          </dl>
        ) : <p>Loading…</p>}
        <h3>PBX links</h3>
        {s && s.links.length === 0 ? <p>No PBX: <a href="#/connectors">add one</a>.</p> : null}
        {s && s.links.length > 0 ? (
          <table><caption class="sr-only">PBX links</caption>
            <thead><tr><th scope="col">Connector</th><th scope="col">State</th><th scope="col">Since</th><th scope="col">Endpoints</th><th scope="col">Reason</th></tr></thead>
            <tbody>{s.links.map((l) => <tr key={l.connectorId}><td>{l.connectorId} <span class="muted">{l.pbxType}</span></td><td><Badge state={l.state} /></td><td>{since(l.since)}</td><td>{l.endpoints}</td><td>{l.reason ?? ''}</td></tr>)}</tbody>
          </table>
        ) : null}
        <h3>Recent endpoint events</h3>
        {s && s.events.length === 0 ? <p>No calls or DND changes yet.</p> : null}
        {s && s.events.length > 0 ? (
          <table><caption class="sr-only">Recent endpoint events</caption>
            <thead><tr><th scope="col">Time</th><th scope="col">Extension</th><th scope="col">State</th><th scope="col">DND</th><th scope="col">Cause</th></tr></thead>
            <tbody>{s.events.slice(0, 20).map((e, i) => <tr key={i}><td>{time(e.changedAt)}</td><td>{e.endpointId} <span class="muted">{e.connectorId}</span></td><td>{e.state}</td><td>{e.dnd ? 'on' : 'off'}</td><td>{e.cause}</td></tr>)}</tbody>
          </table>
        ) : null}
      </section>
      <section class="card">
        <h2>Diagnostics</h2>
        <p>Checks the way to the cloud relay: name lookup, TCP and TLS to each broker address, and the box clock.</p>
        <button type="button" onClick={() => void diagnose()} disabled={running}>{running ? 'Checking…' : 'Run diagnostics'}</button>
        {diagError ? <Alert kind="error">{diagError}</Alert> : null}
        {checks ? (
          <ul class="checks" aria-live="polite">
            {checks.map((c, i) => <li key={i} class={c.ok ? 'check-ok' : 'check-fail'}><Badge state={c.ok ? 'connected' : 'offline'}>{c.ok ? 'OK' : 'Problem'}</Badge> <strong>{c.name}</strong> <span class="muted">{c.target}</span><p>{c.message}</p></li>)}
          </ul>
        ) : null}
      </section>
      <section class="card">
        <h2>Live log</h2>
        <div class="log" role="log" aria-live="off" tabIndex={0} aria-label="Live log">
          {lines.slice(-200).map((l) => <div key={l.seq} class={`log-line level-${l.level}`}><span class="muted">{time(l.time)}</span> {l.component ? <span class="muted">[{l.component}]</span> : null} {l.msg} <span class="muted">{l.detail}</span></div>)}
        </div>
      </section>
    </>
  )
}

export function FactoryReset(props: { onDone: () => void }) {
  const [confirm, setConfirm] = useState('')
  const [error, setError] = useState<string | undefined>()
  const [busy, setBusy] = useState(false)
  const submit = async (e: Event) => {
    e.preventDefault()
    if (confirm !== 'RESET') return setError('Type RESET in capitals to confirm.')
    setBusy(true)
    try {
      await api('POST', '/factory-reset', { confirm })
      setCsrfToken(undefined)
      props.onDone()
    } catch (err) { setError(describeError(err).message) } finally { setBusy(false) }
  }
  return (
    <section class="card narrow">
      <PageHeading>Factory reset</PageHeading>
      <Alert kind="error">This wipes the box's identity (it leaves the cloud until enrolled again with a new code), the PBX connectors set up here, the admin password and all state. The page then asks for a new password and the new setup code the box prints on its console.</Alert>
      <form onSubmit={submit} noValidate>
        <Field label="Type RESET to confirm" error={error}>
          {(a) => <input {...a} name="confirm" autoComplete="off" value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} />}
        </Field>
        <button type="submit" class="danger" disabled={busy}>{busy ? 'Resetting…' : 'Wipe this box'}</button>
      </form>
    </section>
  )
}
