import { useEffect, useState } from 'preact/hooks'
import { api, type Account, type Tenant } from './api.js'
import { Alert, Field, Page, Select, message, when, type Submit } from './ui.js'

/** Change one's own password with the current one (every account); the account's other sessions end. */
function OwnPassword() {
  const [current, setCurrent] = useState('')
  const [next, setNext] = useState('')
  const [repeat, setRepeat] = useState('')
  const [fieldErrors, setFieldErrors] = useState<{ current?: string; next?: string; repeat?: string }>({})
  const [error, setError] = useState('')
  const [done, setDone] = useState('')
  const submit = async (e: Submit) => {
    e.preventDefault()
    setError('')
    setDone('')
    const errors: typeof fieldErrors = {}
    if (!current) errors.current = 'Enter the password you signed in with.'
    if (next.length < 10) errors.next = 'Choose a new password of at least 10 characters.'
    if (repeat !== next) errors.repeat = 'The two new passwords differ: type the same password twice.'
    setFieldErrors(errors)
    if (Object.keys(errors).length) return
    try {
      await api('PUT', '/console/password', { currentPassword: current, newPassword: next })
      setDone('Password changed. Your other sessions (other browsers and devices) have been signed out.')
      setCurrent('')
      setNext('')
      setRepeat('')
    } catch (err) {
      setError(message(err))
    }
  }
  return (
    <section class="card" aria-labelledby="own-password">
      <h2 id="own-password">Change your password</h2>
      <form onSubmit={submit} noValidate>
        <Field label="Current password" type="password" value={current} onInput={setCurrent} autocomplete="current-password" required error={fieldErrors.current} />
        <Field label="New password" type="password" value={next} onInput={setNext} autocomplete="new-password" required error={fieldErrors.next} hint="At least 10 characters. Your other sessions end." />
        <Field label="Repeat the new password" type="password" value={repeat} onInput={setRepeat} autocomplete="new-password" required error={fieldErrors.repeat} />
        <Alert>{error}</Alert>
        {done && <p role="status">{done}</p>}
        <button type="submit">Change password</button>
      </form>
    </section>
  )
}

/** One row of the accounts table: disable or enable, and delete after a confirmation step. */
function AccountRow({ account, self, onChanged, onError }: { account: Account; self: boolean; onChanged: (note: string) => void; onError: (error: string) => void }) {
  const [confirming, setConfirming] = useState(false)
  const act = async (change: () => Promise<unknown>, note: string) => {
    try {
      await change()
      setConfirming(false)
      onChanged(note)
    } catch (err) {
      onError(message(err))
    }
  }
  const name = account.username
  return (
    <tr data-account={name}>
      <td>{name}{self ? ' (you)' : ''}</td>
      <td>{account.role === 'operator' ? 'Operator' : 'Tenant admin'}</td>
      <td>{account.tenantId ?? 'all'}</td>
      <td>{account.disabled ? 'Disabled' : 'Enabled'}</td>
      <td>{when(account.createdAt)}</td>
      <td class="actions">
        <button type="button" class="secondary" aria-label={`${account.disabled ? 'Enable' : 'Disable'} ${name}`}
          onClick={() => act(() => api('PUT', `/console/accounts/${account.id}/disabled`, { disabled: !account.disabled }), account.disabled ? `Account ${name} enabled.` : `Account ${name} disabled: its sessions have ended.`)}>
          {account.disabled ? 'Enable' : 'Disable'}
        </button>
        {!confirming && <button type="button" class="danger" aria-label={`Delete ${name}`} onClick={() => setConfirming(true)}>Delete</button>}
        {confirming && (
          <span role="group" aria-label={`Confirm deleting ${name}`}>
            <button type="button" class="danger" onClick={() => act(() => api('DELETE', `/console/accounts/${account.id}`), `Account ${name} deleted.`)}>Delete {name} for good</button>
            <button type="button" class="secondary" onClick={() => setConfirming(false)}>Keep {name}</button>
          </span>
        )}
      </td>
    </tr>
  )
}

export function AccountsPage({ account: me, tenants }: { account: Account; tenants: Tenant[] }) {
  if (me.role !== 'operator') {
    return <Page title="Your account"><p>Signed in as {me.username}, admin of tenant {me.tenantId}. An operator manages console accounts.</p><OwnPassword /></Page>
  }
  return <OperatorAccounts me={me} tenants={tenants} />
}

function OperatorAccounts({ me, tenants }: { me: Account; tenants: Tenant[] }) {
  const [accounts, setAccounts] = useState<Account[]>([])
  const [username, setUsername] = useState('')
  const [password, setPassword] = useState('')
  const [role, setRole] = useState<'tenant-admin' | 'operator'>('tenant-admin')
  const [tenant, setTenant] = useState(tenants[0]?.id ?? '')
  const [error, setError] = useState('')
  const [done, setDone] = useState('')
  const [listError, setListError] = useState('')
  const [listNote, setListNote] = useState('')
  const load = () => api<{ accounts: Account[] }>('GET', '/console/accounts').then((r) => setAccounts(r.accounts), (err) => setListError(message(err)))
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
        <thead><tr><th scope="col">Username</th><th scope="col">Role</th><th scope="col">Tenant</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Actions</th></tr></thead>
        <tbody>{accounts.map((a) => <AccountRow key={a.id} account={a} self={a.id === me.id}
          onChanged={(note) => { setListError(''); setListNote(note); void load() }} onError={(err) => { setListNote(''); setListError(err) }} />)}</tbody>
      </table></div>
      <Alert>{listError}</Alert>
      {listNote && <p role="status">{listNote}</p>}
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
      <OwnPassword />
    </Page>
  )
}
