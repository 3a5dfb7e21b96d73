import { useEffect, useState } from 'preact/hooks'
import { api, ApiError, csrfHeaders, type Release, type Rollout, type RolloutBox, type Tenant } from './api.js'
import { Alert, Field, Page, Select, message, when, type Submit } from './ui.js'

/** Keeps a view fresh: loads now and every two seconds (rollouts move while the admin watches). */
function usePolled<T>(path: string): [T | undefined, string, () => Promise<void>] {
  const [value, setValue] = useState<T>()
  const [error, setError] = useState('')
  const load = () => api<T>('GET', path).then((v) => { setValue(v); setError('') }, (err) => setError(message(err)))
  useEffect(() => {
    void load()
    const timer = window.setInterval(() => void load(), 2000)
    return () => window.clearInterval(timer)
  }, [path])
  return [value, error, load]
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/** A bundle is uploaded as it is: the relay streams it to disk and hashes it. */
async function uploadRelease(version: string, file: File, notes: string): Promise<void> {
  let response: Response
  try {
    response = await fetch(`/api/v1/updates/releases/${encodeURIComponent(version)}/bundle?notes=${encodeURIComponent(notes)}`, {
      method: 'PUT', credentials: 'same-origin', headers: { 'content-type': 'application/octet-stream', accept: 'application/json', ...csrfHeaders() }, body: file,
    })
  } catch {
    throw new ApiError(0, 'NETWORK', 'The upload broke off: check your connection and try again.')
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null) as { error?: { code?: string; message?: string } } | null
    throw new ApiError(response.status, body?.error?.code ?? 'HTTP', body?.error?.message ?? `The relay answered ${response.status}.`)
  }
}

function AddRelease({ onAdded }: { onAdded: () => void }) {
  const [version, setVersion] = useState('')
  const [notes, setNotes] = useState('')
  const [file, setFile] = useState<File>()
  const [error, setError] = useState('')
  const [busy, setBusy] = useState(false)
  const submit = async (e: Submit) => {
    e.preventDefault()
    if (!file) return setError('Choose the bundle file (.raucb) the release process made.')
    setBusy(true)
    try {
      await uploadRelease(version.trim(), file, notes)
      setVersion('')
      setNotes('')
      setError('')
      onAdded()
    } catch (err) { setError(message(err)) } finally { setBusy(false) }
  }
  return (
    <section class="card" aria-labelledby="add-release">
      <h2 id="add-release">Add a release</h2>
      <form onSubmit={submit} class="inline-form">
        <Field label="Version" value={version} onInput={setVersion} placeholder="1.4.2" required />
        <Field label="What changed (optional)" value={notes} onInput={setNotes} />
        <div class="field">
          <label for="bundle-file">Bundle file (.raucb)</label>
          <input id="bundle-file" type="file" accept=".raucb" onChange={(e) => setFile((e.currentTarget as HTMLInputElement).files?.[0])} />
        </div>
        <button type="submit" disabled={busy}>{busy ? 'Uploading…' : 'Upload release'}</button>
      </form>
      <Alert>{error}</Alert>
    </section>
  )
}

function StartRollout({ releases, tenants, onStarted }: { releases: Release[]; tenants: Tenant[]; onStarted: (id: string) => void }) {
  const [version, setVersion] = useState('')
  const [kind, setKind] = useState<'all' | 'tenant' | 'gateway' | 'percentage'>('all')
  const [value, setValue] = useState('')
  const [stages, setStages] = useState('10, 50, 100')
  const [threshold, setThreshold] = useState('10')
  const [installAt, setInstallAt] = useState('')
  const [error, setError] = useState('')
  const chosen = version || releases[0]?.version || ''
  const submit = async (e: Submit) => {
    e.preventDefault()
    const target = kind === 'all' ? { kind } : kind === 'tenant' ? { kind, tenantId: value || tenants[0]?.id } : kind === 'gateway' ? { kind, gatewayId: value.trim() } : { kind, percent: Number(value) }
    const stageList = stages.split(/[\s,]+/).filter(Boolean).map(Number)
    try {
      const rollout = await api<Rollout>('POST', '/updates/rollouts', {
        version: chosen, target, stages: stageList, failureThreshold: Number(threshold) / 100,
        installAt: installAt ? new Date(installAt).toISOString() : 'now',
      })
      setError('')
      onStarted(rollout.id)
    } catch (err) { setError(message(err)) }
  }
  if (releases.length === 0) return <p>Add a release first, then roll it out.</p>
  return (
    <section class="card" aria-labelledby="start-rollout">
      <h2 id="start-rollout">Start a rollout</h2>
      <form onSubmit={submit} class="inline-form">
        <Select label="Release" value={chosen} onChange={setVersion} options={releases.map((r) => ({ value: r.version, label: r.version }))} />
        <Select label="Gateways" value={kind} onChange={(v) => { setKind(v as typeof kind); setValue('') }} options={[
          { value: 'all', label: 'All gateways' }, { value: 'tenant', label: 'One tenant' }, { value: 'gateway', label: 'One gateway' }, { value: 'percentage', label: 'A share of the fleet' },
        ]} />
        {kind === 'tenant' && <Select label="Tenant" value={value || tenants[0]?.id || ''} onChange={setValue} options={tenants.map((t) => ({ value: t.id, label: t.name }))} />}
        {kind === 'gateway' && <Field label="Gateway id" value={value} onInput={setValue} required />}
        {kind === 'percentage' && <Field label="Share of the fleet (%)" value={value} onInput={setValue} type="number" required />}
        <Field label="Stages (% of those gateways)" value={stages} onInput={setStages} hint="Each stage starts when the one before has finished, e.g. 10, 50, 100." />
        <Field label="Stop when more than this % of a stage fail" value={threshold} onInput={setThreshold} type="number" />
        <Field label="Restart boxes at (empty: as soon as installed)" value={installAt} onInput={setInstallAt} type="datetime-local" />
        <button type="submit">Start rollout</button>
      </form>
      <Alert>{error}</Alert>
    </section>
  )
}

const COUNT_ORDER = ['healthy', 'rolled-back', 'failed', 'rebooting', 'installing', 'verifying', 'downloading', 'queued', 'waiting'] as const
const COUNT_WORDS: Record<string, string> = { healthy: 'healthy', 'rolled-back': 'rolled back', failed: 'failed', rebooting: 'restarting', installing: 'installing', verifying: 'checking', downloading: 'downloading', queued: 'queued', waiting: 'waiting for their stage' }
const counts = (c: Record<string, number>) => COUNT_ORDER.filter((k) => c[k]).map((k) => `${c[k]} ${COUNT_WORDS[k]}`).join(', ')

export function UpdatesPage({ tenants }: { tenants: Tenant[] }) {
  const [releases, releaseError, loadReleases] = usePolled<{ releases: Release[] }>('/updates/releases')
  const [rollouts, rolloutError] = usePolled<{ rollouts: Rollout[] }>('/updates/rollouts')
  return (
    <Page title="Updates">
      <Alert>{releaseError || rolloutError}</Alert>
      <section class="card" aria-labelledby="rollouts">
        <h2 id="rollouts">Rollouts</h2>
        {rollouts && rollouts.rollouts.length === 0 && <p>No rollouts yet.</p>}
        {rollouts && rollouts.rollouts.length > 0 && (
          <div class="table-wrap">
            <table>
              <thead><tr><th scope="col">Rollout</th><th scope="col">Release</th><th scope="col">Gateways</th><th scope="col">State</th><th scope="col">Stage</th><th scope="col">Boxes</th><th scope="col">Started</th></tr></thead>
              <tbody>
                {rollouts.rollouts.map((r) => (
                  <tr key={r.id} data-rollout={r.id}>
                    <th scope="row"><a href={`#/updates/${r.id}`}>{r.id}</a></th>
                    <td>{r.version}</td>
                    <td>{r.targetText}</td>
                    <td>{r.stateText}</td>
                    <td>{r.currentStage + 1} of {r.stages.length}</td>
                    <td>{counts(r.counts)}</td>
                    <td>{when(r.createdAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      {releases && <StartRollout releases={releases.releases} tenants={tenants} onStarted={(id) => { location.hash = `#/updates/${id}` }} />}
      <section class="card" aria-labelledby="releases">
        <h2 id="releases">Releases</h2>
        {releases && releases.releases.length === 0 && <p>No releases yet.</p>}
        {releases && releases.releases.length > 0 && (
          <table>
            <thead><tr><th scope="col">Version</th><th scope="col">Size</th><th scope="col">SHA-256</th><th scope="col">What changed</th><th scope="col">Added</th></tr></thead>
            <tbody>{releases.releases.map((r) => <tr key={r.version}><th scope="row">{r.version}</th><td>{mib(r.size)}</td><td><code>{r.sha256.slice(0, 16)}…</code></td><td>{r.notes}</td><td>{when(r.createdAt)} by {r.createdBy}</td></tr>)}</tbody>
          </table>
        )}
      </section>
      <AddRelease onAdded={() => void loadReleases()} />
    </Page>
  )
}

export function RolloutPage({ id }: { id: string }) {
  const [view, error, load] = usePolled<{ rollout: Rollout; gateways: RolloutBox[] }>(`/updates/rollouts/${encodeURIComponent(id)}`)
  const [actionError, setActionError] = useState('')
  const act = async (action: 'pause' | 'resume') => {
    try {
      await api('POST', `/updates/rollouts/${encodeURIComponent(id)}/${action}`)
      setActionError('')
      await load()
    } catch (err) { setActionError(message(err)) }
  }
  const r = view?.rollout
  return (
    <Page title={`Rollout ${id}`} actions={r && (r.state === 'running' ? <button onClick={() => void act('pause')}>Pause rollout</button> : r.state === 'paused' ? <button onClick={() => void act('resume')}>Resume rollout</button> : null)}>
      <p><a href="#/updates">All rollouts</a></p>
      <Alert>{error || actionError}</Alert>
      {r && (
        <dl class="facts">
          <dt>Release</dt><dd>{r.version}</dd>
          <dt>Gateways</dt><dd>{r.targetText}, in stages of {r.stages.join(' %, ')} %</dd>
          <dt>State</dt><dd data-testid="rollout-state">{r.stateText}</dd>
          {r.reason && <><dt>Why</dt><dd>{r.reason}</dd></>}
          <dt>Stage</dt><dd>{r.currentStage + 1} of {r.stages.length}</dd>
          <dt>Boxes</dt><dd>{counts(r.counts)}</dd>
          <dt>Restart at</dt><dd>{r.installAt === 'now' ? 'as soon as installed' : when(r.installAt)}</dd>
        </dl>
      )}
      {view && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Each gateway in this rollout and where its update stands (updates every two seconds)</caption>
            <thead><tr><th scope="col">Gateway</th><th scope="col">Stage</th><th scope="col">Update</th><th scope="col">Changed</th></tr></thead>
            <tbody>
              {view.gateways.map((g) => (
                <tr key={g.gatewayId} data-gateway={g.gatewayId}>
                  <th scope="row"><a href={`#/gateways/${encodeURIComponent(g.gatewayId)}`}>{g.gatewayId}</a></th>
                  <td>{g.stage + 1}</td>
                  <td>{g.stateText}</td>
                  <td>{when(g.updatedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Page>
  )
}
