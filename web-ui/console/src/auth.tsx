import { useState } from 'preact/hooks'
import { api, ApiError, type SessionInfo } from './api.js'
import { Alert, Field, message, type Submit } from './ui.js'

/** First visit (no account yet) creates the first operator; otherwise sign in. */
export function SignIn({ firstRun, onSignedIn }: { firstRun: boolean; onSignedIn: (session: SessionInfo) => void }) {
  const [username, setUsername] = useState('')
  const [password, setPassword] = useState('')
  const [confirm, setConfirm] = useState('')
  const [setupSecret, setSetupSecret] = useState('')
  const [error, setError] = useState('')
  const [fieldErrors, setFieldErrors] = useState<{ setupSecret?: string; username?: string; password?: string; confirm?: string }>({})
  const [busy, setBusy] = useState(false)

  const submit = async (e: Submit) => {
    e.preventDefault()
    setError('')
    const errors: typeof fieldErrors = {}
    if (firstRun && !setupSecret.trim()) errors.setupSecret = 'Enter the setup secret from the relay\'s log.'
    if (!username) errors.username = 'Enter a username.'
    if (!password) errors.password = 'Enter a password.'
    if (firstRun && password && password.length < 10) errors.password = 'Choose a password of at least 10 characters.'
    if (firstRun && confirm !== password) errors.confirm = 'The two passwords differ: type the same password twice.'
    setFieldErrors(errors)
    if (Object.keys(errors).length) return
    setBusy(true)
    try {
      onSignedIn(await api<SessionInfo>('POST', firstRun ? '/console/first-run' : '/console/login', firstRun ? { username, password, setupSecret: setupSecret.trim() } : { username, password }))
    } catch (err) {
      setError(err instanceof ApiError && err.status === 0 ? err.message : message(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <main id="main" class="signin">
      <h1>PBX presence: cloud console</h1>
      <form onSubmit={submit} noValidate aria-describedby={error ? 'signin-error' : undefined}>
        <h2>{firstRun ? 'Create the first administrator' : 'Sign in'}</h2>
        {firstRun && <p>No account exists yet. The account you create now is an operator: it sees the whole fleet and can create accounts for tenant admins.</p>}
        {firstRun && <Field label="Setup secret" name="setupSecret" value={setupSecret} onInput={setSetupSecret} autocomplete="off" required error={fieldErrors.setupSecret}
          hint="The relay printed it in its log when it started (the line with setupSecret) and wrote it to the file console-setup-secret in its data folder, next to seal.key. The relay's API token works too." />}
        <Field label="Username" name="username" value={username} onInput={setUsername} autocomplete="username" required error={fieldErrors.username} />
        <Field label="Password" name="password" type="password" value={password} onInput={setPassword} autocomplete={firstRun ? 'new-password' : 'current-password'} required error={fieldErrors.password} hint={firstRun ? 'At least 10 characters.' : undefined} />
        {firstRun && <Field label="Repeat the password" name="confirm" type="password" value={confirm} onInput={setConfirm} autocomplete="new-password" required error={fieldErrors.confirm} />}
        <Alert id="signin-error">{error}</Alert>
        <button type="submit" disabled={busy}>{firstRun ? 'Create administrator' : 'Sign in'}</button>
      </form>
    </main>
  )
}
