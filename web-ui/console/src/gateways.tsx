import { useEffect, useMemo, useState } from 'preact/hooks'
import { api, q, type Account, type Gateway, type GatewayIdentity, type Tenant, type TelemetrySample } from './api.js'
import { onLive } from './live.js'
import { Alert, ago, Field, LineChart, Page, Select, StateBadge, useNow, when, message, type Submit } from './ui.js'

interface IssuedCode { gatewayId: string; code: string; expiresAt: string }
interface EnrollInfo { enrollUrl: string; caPin: string }

function useGateways(): [Gateway[] | undefined, string] {
  const [gateways, setGateways] = useState<Gateway[]>()
  const [error, setError] = useState('')
  useEffect(() => {
    api<{ gateways: Gateway[] }>('GET', '/gateways').then((r) => setGateways(r.gateways), (err) => setError(message(err)))
    return onLive((m) => {
      if (m.type !== 'gateway') return
      setGateways((list) => {
        const rest = (list ?? []).filter((g) => g.id !== m.gateway.id)
        return [...rest, m.gateway].sort((a, b) => a.id.localeCompare(b.id))
      })
    })
  }, [])
  return [gateways, error]
}

function CodeCard({ issued, info }: { issued: IssuedCode; info: EnrollInfo | undefined }) {
  return (
    <div class="card code-card" role="status" aria-live="polite">
      <h3>Enrollment code for {issued.gatewayId}</h3>
      <p>Give the installer these three values for the box's setup page. The code works once and is shown only now.</p>
      <dl>
        <dt>Code</dt><dd><code class="code" data-testid="enrollment-code">{issued.code}</code> (valid until {when(issued.expiresAt)})</dd>
        <dt>Relay address</dt><dd><code data-testid="enroll-url">{info?.enrollUrl ?? '…'}</code></dd>
        <dt>CA pin</dt><dd><code class="pin" data-testid="ca-pin">{info?.caPin ?? '…'}</code></dd>
      </dl>
    </div>
  )
}

function useEnrollInfo(): EnrollInfo | undefined {
  const [info, setInfo] = useState<EnrollInfo>()
  useEffect(() => { api<EnrollInfo>('GET', '/console/enroll-info').then(setInfo, () => undefined) }, [])
  return info
}

function CreateGateway({ account, tenants }: { account: Account; tenants: Tenant[] }) {
  const [tenant, setTenant] = useState(account.tenantId ?? tenants[0]?.id ?? '')
  const [id, setId] = useState('')
  const [name, setName] = useState('')
  const [error, setError] = useState('')
  const [issued, setIssued] = useState<IssuedCode>()
  const info = useEnrollInfo()
  useEffect(() => { if (!tenant && tenants[0]) setTenant(tenants[0].id) }, [tenants])
  const submit = async (e: Submit) => {
    e.preventDefault()
    setError('')
    try {
      const created = await api<IssuedCode>('POST', `/tenants/${encodeURIComponent(tenant)}/gateways`, { ...(id ? { id } : {}), ...(name ? { name } : {}) })
      setIssued(created)
      setId('')
      setName('')
    } catch (err) {
      setError(message(err))
    }
  }
  return (
    <section class="card" aria-labelledby="create-gw">
      <h2 id="create-gw">Add a gateway</h2>
      <form onSubmit={submit} class="inline-form">
        {account.role === 'operator' && <Select label="Tenant" value={tenant} onChange={setTenant} options={tenants.map((t) => ({ value: t.id, label: t.name }))} />}
        <Field label="Gateway id (optional)" value={id} onInput={setId} hint="Letters, digits, . _ -; empty picks one." />
        <Field label="Name (optional)" value={name} onInput={setName} placeholder="HQ basement" />
        <button type="submit">Create gateway and code</button>
      </form>
      <Alert>{error}</Alert>
      {issued && <CodeCard issued={issued} info={info} />}
    </section>
  )
}

export function GatewaysPage({ account, tenants }: { account: Account; tenants: Tenant[] }) {
  const [gateways, error] = useGateways()
  const now = useNow()
  return (
    <Page title="Gateways">
      <Alert>{error}</Alert>
      {gateways && gateways.length === 0 && <p>No gateways yet: add one below and give the installer its code.</p>}
      {gateways && gateways.length > 0 && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Gateways and their state (updates live)</caption>
            <thead><tr><th scope="col">Gateway</th><th scope="col">State</th><th scope="col">Reason</th><th scope="col">Since</th><th scope="col">Last seen</th><th scope="col">Version (slot)</th><th scope="col">PBX links</th></tr></thead>
            <tbody>
              {gateways.map((g) => (
                <tr key={g.id} data-gateway={g.id}>
                  <th scope="row"><a href={`#/gateways/${encodeURIComponent(g.id)}`}>{g.id}</a>{account.role === 'operator' && <div class="muted">{g.tenantId}</div>}</th>
                  <td><StateBadge state={g.state} /></td>
                  <td>{g.reason}</td>
                  <td>{ago(g.since, now)}</td>
                  <td>{ago(g.lastSeen, now)}</td>
                  <td>{g.version ?? '–'}{g.slot ? ` (slot ${g.slot})` : ''}</td>
                  <td>{g.links.length === 0 ? 'none reported' : g.links.map((l) => <div key={l.connectorId}>{l.connectorId} ({l.pbxType}): {l.state}{l.reason ? `, ${l.reason}` : ''}</div>)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <CreateGateway account={account} tenants={tenants} />
    </Page>
  )
}

export function GatewayDetailPage({ id }: { id: string }) {
  const [gateway, setGateway] = useState<Gateway>()
  const [identity, setIdentity] = useState<GatewayIdentity>()
  const [samples, setSamples] = useState<TelemetrySample[]>([])
  const [error, setError] = useState('')
  const [issued, setIssued] = useState<IssuedCode>()
  const [confirm, setConfirm] = useState('')
  const [reason, setReason] = useState('')
  const [revokeError, setRevokeError] = useState('')
  const info = useEnrollInfo()
  const now = useNow()
  const path = `/gateways/${encodeURIComponent(id)}`
  const loadTelemetry = () => api<{ samples: TelemetrySample[] }>('GET', `${path}/telemetry${q({ from: new Date(Date.now() - 6 * 3600_000).toISOString(), limit: 2000 })}`).then((r) => setSamples(r.samples), () => undefined)
  useEffect(() => {
    api<Gateway>('GET', path).then(setGateway, (err) => setError(message(err)))
    api<GatewayIdentity>('GET', `${path}/identity`).then(setIdentity, () => undefined)
    void loadTelemetry()
    return onLive((m) => {
      if (m.type === 'gateway' && m.gateway.id === id) {
        setGateway(m.gateway)
        if (m.gateway.telemetry) setSamples((s) => (s.some((x) => x.at === m.gateway.telemetry!.at) ? s : [...s, m.gateway.telemetry!]))
      }
    })
  }, [id])

  const series = useMemo(() => {
    const t = (s: TelemetrySample) => new Date(s.at).getTime()
    const cpu = samples.filter((s) => s.data.cpuPercent !== undefined).map((s) => ({ t: t(s), v: s.data.cpuPercent! }))
    const mem = samples.filter((s) => s.data.memUsedBytes !== undefined).map((s) => ({ t: t(s), v: s.data.memUsedBytes! / 1048576 }))
    const temp = samples.filter((s) => s.data.temperatureC !== undefined).map((s) => ({ t: t(s), v: s.data.temperatureC! }))
    const rate: Array<{ t: number; v: number }> = []
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1]!
      const b = samples[i]!
      const dt = (t(b) - t(a)) / 60_000
      const de = b.data.eventsSent - a.data.eventsSent
      if (dt > 0 && de >= 0) rate.push({ t: t(b), v: de / dt })
    }
    return { cpu, mem, temp, rate }
  }, [samples])

  const newCode = async () => {
    setError('')
    try {
      setIssued(await api<IssuedCode>('POST', `${path}/enrollment-codes`))
    } catch (err) {
      setError(message(err))
    }
  }
  const revoke = async (e: Submit) => {
    e.preventDefault()
    setRevokeError('')
    if (confirm !== id) return setRevokeError(`Type the gateway id "${id}" exactly to confirm.`)
    if (!reason.trim()) return setRevokeError('Say why (it is kept with the gateway and in the event log).')
    try {
      setIdentity(await api<GatewayIdentity>('POST', `${path}/revoke`, { reason: reason.trim() }))
      setConfirm('')
    } catch (err) {
      setRevokeError(message(err))
    }
  }

  return (
    <Page title={`Gateway ${id}`}>
      <p><a href="#/gateways">← All gateways</a></p>
      <Alert>{error}</Alert>
      {gateway && (
        <div class="card">
          <p class="state-line"><StateBadge state={gateway.state} /> {gateway.reason} (since {when(gateway.since)})</p>
          <dl class="facts">
            <dt>Tenant</dt><dd>{gateway.tenantId}</dd>
            <dt>Enrollment</dt><dd>{identity ? `${identity.state}${identity.revokedReason ? `: ${identity.revokedReason}` : ''}` : '–'}</dd>
            <dt>Last seen</dt><dd>{ago(gateway.lastSeen, now)}</dd>
            <dt>Last answer</dt><dd>{gateway.lastAnswered ? `${ago(gateway.lastAnswered, now)} (${gateway.roundTripMs ?? '?'} ms round trip)` : 'none yet'}</dd>
            <dt>Version</dt><dd>{gateway.version ?? '–'}{gateway.slot ? `, booted from slot ${gateway.slot}` : ''}</dd>
            <dt>PBX links</dt><dd>{gateway.links.length === 0 ? 'none reported' : gateway.links.map((l) => <div key={l.connectorId}>{l.connectorId} ({l.pbxType}): {l.state}, {l.endpoints} extensions{l.reason ? `, ${l.reason}` : ''}</div>)}</dd>
          </dl>
        </div>
      )}
      <h2>Telemetry (last 6 hours)</h2>
      <div class="charts">
        <LineChart title="CPU" unit="%" points={series.cpu} max={100} />
        <LineChart title="Memory used" unit="MiB" points={series.mem} />
        {series.temp.length > 0 && <LineChart title="Temperature" unit="°C" points={series.temp} />}
        <LineChart title="Event rate" unit="events/min" points={series.rate} />
      </div>
      {identity?.state !== 'revoked' && (
        <section class="card" aria-labelledby="codes">
          <h2 id="codes">Enrollment</h2>
          <p>A new code replaces any unused one; an enrolled box keeps its certificate until you revoke it.</p>
          <button type="button" onClick={newCode}>New enrollment code</button>
          {issued && <CodeCard issued={issued} info={info} />}
        </section>
      )}
      {identity?.state !== 'revoked' && (
        <section class="card danger" aria-labelledby="revoke">
          <h2 id="revoke">Revoke this gateway</h2>
          <p>The box is cut off at once and cannot reconnect; this cannot be undone (create a new gateway instead).</p>
          <form onSubmit={revoke}>
            <Field label="Reason" value={reason} onInput={setReason} />
            <Field label={`Type ${id} to confirm`} value={confirm} onInput={setConfirm} error={revokeError || undefined} />
            <button type="submit" class="danger">Revoke {id}</button>
          </form>
        </section>
      )}
    </Page>
  )
}
