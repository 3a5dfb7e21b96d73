import { useEffect, useState } from 'preact/hooks'
import { api, type Account, type Tenant } from './api.js'
import { Alert, Field, Page, Select, message, when, type Submit } from './ui.js'

export function AccountsPage({ tenants }: { tenants: Tenant[] }) {
  const [accounts, setAccounts] = useState<Account[]>([])
  const [username, setUsername] = useState('')
  const [password, setPassword] = useState('')
  const [role, setRole] = useState<'tenant-admin' | 'operator'>('tenant-admin')
  const [tenant, setTenant] = useState(tenants[0]?.id ?? '')
  const [error, setError] = useState('')
  const [done, setDone] = useState('')
  const load = () => api<{ accounts: Account[] }>('GET', '/console/accounts').then((r) => setAccounts(r.accounts), (err) => setError(message(err)))
  useEffect(() => { void load() }, [])
  useEffect(() => { if (!tenant && tenants[0]) setTenant(tenants[0].id) }, [tenants])
  const submit = async (e: Submit) => {
    e.preventDefault()
    setError('')
    setDone('')
    try {
      const created = await api<Account>('POST', '/console/accounts', { username, password, role, ...(role === 'tenant-admin' ? { tenantId: tenant } : {}) })
      setDone(`Account ${created.username} created: give them the password through a safe channel.`)
      setUsername('')
      setPassword('')
      void load()
    } catch (err) {
      setError(message(err))
    }
  }
  return (
    <Page title="Console accounts">
      <div class="table-wrap"><table>
        <thead><tr><th scope="col">Username</th><th scope="col">Role</th><th scope="col">Tenant</th><th scope="col">Created</th></tr></thead>
        <tbody>{accounts.map((a) => <tr key={a.id}><td>{a.username}</td><td>{a.role === 'operator' ? 'Operator' : 'Tenant admin'}</td><td>{a.tenantId ?? 'all'}</td><td>{when(a.createdAt)}</td></tr>)}</tbody>
      </table></div>
      <section class="card" aria-labelledby="new-account">
        <h2 id="new-account">Create an account</h2>
        <form onSubmit={submit}>
          <Field label="Username" value={username} onInput={setUsername} autocomplete="off" />
          <Field label="Password" type="password" value={password} onInput={setPassword} autocomplete="new-password" hint="At least 10 characters." />
          <Select label="Role" value={role} onChange={(v) => setRole(v === 'operator' ? 'operator' : 'tenant-admin')} options={[{ value: 'tenant-admin', label: 'Tenant admin (one tenant)' }, { value: 'operator', label: 'Operator (whole fleet)' }]} />
          {role === 'tenant-admin' && <Select label="Tenant" value={tenant} onChange={setTenant} options={tenants.map((t) => ({ value: t.id, label: t.name }))} />}
          <Alert>{error}</Alert>
          {done && <p role="status">{done}</p>}
          <button type="submit">Create account</button>
        </form>
      </section>
    </Page>
  )
}
