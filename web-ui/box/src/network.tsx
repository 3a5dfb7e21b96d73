import { useEffect, useState } from 'preact/hooks'
import { api, describeError, type NetworkSettings, type NetworkView, type SshSettings } from './api.js'
import { PageHeading } from './pages.js'
import { Alert, Field } from './ui.js'

/** One entry per line or separated by commas/spaces, as people paste server lists. */
const listOf = (text: string): string[] => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean)

/** Network (DHCP or static, DNS, NTP, proxy) and SSH: both applied by the box's root units after saving. */
export function NetworkPage() {
  const [view, setView] = useState<NetworkView | undefined>()
  const [form, setForm] = useState({ mode: 'dhcp' as NetworkSettings['mode'], address: '', prefix: '24', gateway: '', dns: '', ntp: '', httpProxy: '' })
  const [error, setError] = useState<{ field?: string | undefined; message: string } | undefined>()
  const [saved, setSaved] = useState<string | undefined>()
  const [busy, setBusy] = useState(false)
  const show = (v: NetworkView) => {
    setView(v)
    const s = v.settings
    setForm({ mode: s.mode, address: s.address ?? '', prefix: String(s.prefix ?? 24), gateway: s.gateway ?? '', dns: s.dns.join('\n'), ntp: s.ntp.join('\n'), httpProxy: s.httpProxy ?? '' })
  }
  useEffect(() => { api<NetworkView>('GET', '/network').then(show, (e: unknown) => setError({ message: describeError(e).message })) }, [])
  const set = (key: keyof typeof form) => (e: { currentTarget: { value: string } }) => setForm({ ...form, [key]: e.currentTarget.value })

  const save = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    setSaved(undefined)
    const body: NetworkSettings = {
      mode: form.mode, dns: listOf(form.dns), ntp: listOf(form.ntp),
      ...(form.mode === 'static' ? { address: form.address.trim(), prefix: Number(form.prefix), ...(form.gateway.trim() ? { gateway: form.gateway.trim() } : {}) } : {}),
      ...(form.httpProxy.trim() ? { httpProxy: form.httpProxy.trim() } : {}),
    }
    try {
      const v = await api<NetworkView>('PUT', '/network', body)
      show(v)
      setError(undefined)
      setSaved(v.trial ? undefined : 'Saved: the box applies the new setting in a few seconds.')
    } catch (err) {
      const e2 = describeError(err)
      setError({ field: e2.field, message: e2.message })
    } finally { setBusy(false) }
  }
  const confirm = async () => {
    try {
      show(await api<NetworkView>('POST', '/network/confirm'))
      setSaved('Kept: the box stays on this address.')
      setError(undefined)
    } catch (err) { setError({ message: describeError(err).message }) }
  }
  const fieldError = (name: string) => (error?.field === name ? error.message : undefined)
  // An error about a field the form does not show goes above the form instead.
  const visible = [...(form.mode === 'static' ? ['address', 'prefix', 'gateway'] : []), 'dns', 'ntp', 'httpProxy']

  return (
    <>
      <section class="card">
        <PageHeading>Network</PageHeading>
        {view?.trial ? (
          <Alert kind="info">
            <p>The new address is on trial until {new Date(view.trial.until).toLocaleTimeString()}. Open <a href={view.trial.confirmUrl}>{view.trial.confirmUrl}</a>, sign in and keep it there; otherwise the box goes back to its previous setting by itself.</p>
            <button type="button" onClick={() => void confirm()}>Keep this setting</button>
          </Alert>
        ) : null}
        {saved ? <Alert kind="ok">{saved}</Alert> : null}
        {error && !(error.field && visible.includes(error.field)) ? <Alert kind="error">{error.message}</Alert> : null}
        {view?.lastApply ? <p class="muted">Last change applied: {view.lastApply}</p> : null}
        <form onSubmit={save} noValidate>
          <fieldset>
            <legend>Address</legend>
            <label class="field-check"><input type="radio" name="mode" value="dhcp" checked={form.mode === 'dhcp'} onChange={() => setForm({ ...form, mode: 'dhcp' })} /> Automatic (DHCP)</label>
            <label class="field-check"><input type="radio" name="mode" value="static" checked={form.mode === 'static'} onChange={() => setForm({ ...form, mode: 'static' })} /> Fixed address</label>
          </fieldset>
          {form.mode === 'static' ? (
            <>
              <Field label="IP address" hint="For example 192.168.1.20. You confirm it at the new address within 5 minutes, or the box goes back." error={fieldError('address')}>
                {(a) => <input {...a} name="address" inputMode="decimal" autoComplete="off" value={form.address} onInput={set('address')} />}
              </Field>
              <Field label="Prefix length" hint="24 is the netmask 255.255.255.0." error={fieldError('prefix')}>
                {(a) => <input {...a} name="prefix" inputMode="numeric" value={form.prefix} onInput={set('prefix')} />}
              </Field>
              <Field label="Gateway (router)" error={fieldError('gateway')}>
                {(a) => <input {...a} name="gateway" inputMode="decimal" autoComplete="off" value={form.gateway} onInput={set('gateway')} />}
              </Field>
            </>
          ) : null}
          <Field label="DNS servers" hint="Up to 4 addresses, one per line. Empty: from DHCP." error={fieldError('dns')}>
            {(a) => <textarea {...a} name="dns" rows={2} value={form.dns} onInput={set('dns')} />}
          </Field>
          <Field label="NTP servers" hint="Up to 4 names or addresses, one per line. Empty: from DHCP, else Debian's pool." error={fieldError('ntp')}>
            {(a) => <textarea {...a} name="ntp" rows={2} value={form.ntp} onInput={set('ntp')} />}
          </Field>
          <Field label="HTTP proxy" hint="http://proxy.example.com:3128 if the site lets HTTPS out only through a proxy; used from the gateway's next start." error={fieldError('httpProxy')}>
            {(a) => <input {...a} name="httpProxy" type="url" autoComplete="off" value={form.httpProxy} onInput={set('httpProxy')} />}
          </Field>
          <button type="submit" disabled={busy}>{busy ? 'Saving…' : 'Save network settings'}</button>
        </form>
      </section>
      <SshCard />
    </>
  )
}

function SshCard() {
  const [enabled, setEnabled] = useState(false)
  const [keys, setKeys] = useState('')
  const [error, setError] = useState<string | undefined>()
  const [saved, setSaved] = useState<string | undefined>()
  const show = (s: SshSettings) => { setEnabled(s.enabled); setKeys(s.keys.join('\n')) }
  useEffect(() => { api<SshSettings>('GET', '/ssh').then(show, (e: unknown) => setError(describeError(e).message)) }, [])
  const save = async (e: Event) => {
    e.preventDefault()
    setSaved(undefined)
    try {
      const s = await api<SshSettings>('PUT', '/ssh', { enabled, keys: keys.split('\n').filter((k) => k.trim()) })
      show(s)
      setError(undefined)
      setSaved(s.enabled ? `SSH is on for ${s.keys.length} key(s): ssh root@ this box's address.` : 'SSH is off.')
    } catch (err) { setError(describeError(err).message) }
  }
  return (
    <section class="card">
      <h2>SSH</h2>
      <p>Off unless you need it. Login as root with a public key only; there is no password login.</p>
      {saved ? <Alert kind="ok">{saved}</Alert> : null}
      <form onSubmit={save} noValidate>
        <label class="field-check"><input type="checkbox" name="sshEnabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} /> Allow SSH</label>
        <Field label="Public keys" hint="One per line, the whole line of your .pub file: ssh-ed25519, ecdsa-sha2-nistp256 or ssh-rsa (3072 bits or more)." error={error}>
          {(a) => <textarea {...a} name="sshKeys" rows={4} spellcheck={false} value={keys} onInput={(e) => setKeys(e.currentTarget.value)} />}
        </Field>
        <button type="submit">Save SSH settings</button>
      </form>
    </section>
  )
}
