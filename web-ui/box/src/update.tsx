import { useEffect, useState } from 'preact/hooks'
import { api, ApiError, csrfHeader, describeError, type UpdateProgress, type UpdateView } from './api.js'
import { PageHeading } from './pages.js'
import { Alert, Field } from './ui.js'

/** Each update state in an installer's words (gateway/protocol/README.md has the same table). */
const STATE_TEXT: Record<UpdateProgress['state'], string> = {
  queued: 'Accepted: starting shortly.',
  downloading: 'Downloading the new version.',
  verifying: 'Checking the bundle: size, checksum and that it is signed by a key built into this box.',
  installing: 'Installing to the spare slot. The running version is untouched.',
  rebooting: 'Installed. The box restarts into the new version now; this page comes back in a minute or two.',
  healthy: 'Done: the box runs the new version and has marked it good.',
  'rolled-back': 'Rolled back: the new version did not come up healthy, so the box went back to the previous one.',
  failed: 'Not installed: the box still runs its previous version.',
}

/** Uploads the bundle with the same session and CSRF token as every other change; progress from XHR's upload events. */
function upload(file: File, onProgress: (sent: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', '/api/update/bundle')
    xhr.setRequestHeader('content-type', 'application/octet-stream')
    for (const [name, value] of Object.entries(csrfHeader())) xhr.setRequestHeader(name, value)
    xhr.upload.onprogress = (e) => onProgress(e.loaded)
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'The upload broke off: check that this computer is still on the box\'s network, then try again.'))
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve()
      let message = `The box refused the file (HTTP ${xhr.status}).`
      try { message = (JSON.parse(xhr.responseText) as { error?: { message?: string } }).error?.message ?? message } catch { /* not JSON */ }
      reject(new ApiError(xhr.status, 'UPLOAD', message))
    }
    xhr.send(file)
  })
}

/** The update panel: what the box runs, the last update's progress, and a bundle upload for sites without a relay. */
export function UpdatePage() {
  const [view, setView] = useState<UpdateView | undefined>()
  const [file, setFile] = useState<File | undefined>()
  const [sent, setSent] = useState<number | undefined>()
  const [error, setError] = useState<string | undefined>()
  const load = () => api<UpdateView>('GET', '/update').then(setView, (e: unknown) => setError(describeError(e).message))
  useEffect(() => {
    void load()
    const timer = setInterval(() => void load(), 1500)
    return () => clearInterval(timer)
  }, [])
  const send = async (e: Event) => {
    e.preventDefault()
    if (!file) return setError('Choose the bundle file (.raucb) first.')
    setError(undefined)
    setSent(0)
    try {
      await upload(file, setSent)
      await load()
    } catch (err) {
      setError(describeError(err).message)
    } finally { setSent(undefined) }
  }
  const latest = view?.latest
  const percent = latest?.state === 'downloading' && latest.total ? Math.floor(((latest.bytes ?? 0) / latest.total) * 100) : undefined
  return (
    <section class="card">
      <PageHeading>Software update</PageHeading>
      {view ? <p>This box runs version <strong>{view.runningVersion}</strong>{view.slot ? <> from slot <strong>{view.slot}</strong></> : null}.</p> : null}
      {latest ? (
        <Alert kind={latest.state === 'failed' || latest.state === 'rolled-back' ? 'error' : latest.state === 'healthy' ? 'ok' : 'info'}>
          <p>Update to {latest.version}: {STATE_TEXT[latest.state]}{percent !== undefined ? ` ${percent} %` : ''}</p>
          {latest.reason ? <p>Why: {latest.reason}</p> : null}
        </Alert>
      ) : null}
      {view && !view.available ? <p>This box does not install updates itself: update it with its own package or image.</p> : (
        <form onSubmit={send}>
          <p>Normally the cloud console sends updates. Without a cloud connection, upload a signed update bundle here: the box checks it, installs it next to the running version and restarts into it.</p>
          <Field label="Update bundle (.raucb)">
            {(attrs) => <input {...attrs} type="file" accept=".raucb" onChange={(e) => setFile(e.currentTarget.files?.[0])} />}
          </Field>
          {sent !== undefined && file ? <p role="status">Uploading: {Math.floor((sent / Math.max(1, file.size)) * 100)} %</p> : null}
          {error ? <Alert kind="error"><p>{error}</p></Alert> : null}
          <button type="submit" disabled={sent !== undefined}>Upload and install</button>
        </form>
      )}
    </section>
  )
}
