import { useEffect, useState } from 'preact/hooks'
import { ApiError, api, q, type Account, type MappedEndpoint, type MappingReport, type Person, type Tenant } from './api.js'
import { onLive } from './live.js'
import { useTenantChoice } from './people.js'
import { Alert, Field, Page, Select, message, useId, when, type Submit } from './ui.js'

/**
 * The mapping report of one tenant in words (extensions without a person, Entra users without an extension,
 * duplicates) and the manual mappings: a tenant admin maps an extension to a person by e-mail and removes a manual
 * mapping; operators read it (cloud-relay/src/console/console-access.ts refuses their changes).
 */

const nameOf = (e: { gatewayId: string; connectorId: string; endpointId: string }) => `${e.gatewayId}/${e.connectorId}/${e.endpointId}`

const VIA: Record<string, string> = {
  mail: 'automatically, by the user\'s mail address',
  userPrincipalName: 'automatically, by the user\'s sign-in name (UPN)',
  proxyAddress: 'automatically, by one of the user\'s proxy addresses',
  'e-mail': 'automatically, by e-mail (no import yet)',
  manual: 'by hand (manual mapping)',
}

const personLabel = (p: Person | undefined, id: number | null) => (p ? `${p.displayName || p.email} (${p.email})` : id === null ? 'nobody' : `person ${id}`)

function MapForm({ tenant, endpoint, people, listId, action, onMapped }: {
  tenant: string; endpoint: MappedEndpoint; people: Person[]; listId: string; action: string; onMapped: (text: string) => void
}) {
  const [email, setEmail] = useState('')
  const [fieldError, setFieldError] = useState('')
  const [formError, setFormError] = useState('')
  const [busy, setBusy] = useState(false)
  const submit = async (e: Submit) => {
    e.preventDefault()
    setFieldError('')
    setFormError('')
    const wanted = email.trim().toLowerCase()
    if (!wanted) return setFieldError('Enter the e-mail of the person who uses this extension, or pick one from the suggestions.')
    const person = people.find((p) => p.email.toLowerCase() === wanted)
    if (!person) return setFieldError(`No person in ${tenant} has the e-mail ${email.trim()}: pick one from the suggestions (the relay's people and the imported Entra users).`)
    setBusy(true)
    try {
      await api('PUT', `/tenants/${encodeURIComponent(tenant)}/mappings`, { gatewayId: endpoint.gatewayId, connectorId: endpoint.connectorId, endpointId: endpoint.endpointId, personId: person.id })
      setEmail('')
      onMapped(`Extension ${endpoint.endpointId} is now mapped by hand to ${person.displayName || person.email}.`)
    } catch (err) {
      if (err instanceof ApiError && err.code === 'DIRECTORY_UNKNOWN_PERSON') setFieldError(`${err.message} Reload the page to see the current people.`)
      else setFormError(message(err))
    } finally {
      setBusy(false)
    }
  }
  return (
    <form class="inline-form map-form" noValidate onSubmit={submit} aria-label={`Map extension ${endpoint.endpointId} by hand`}>
      <Field label={`Person's e-mail for extension ${endpoint.endpointId}`} type="email" value={email} onInput={setEmail} error={fieldError} list={listId}
        autocomplete="off" hint={`${endpoint.name || 'no name'} on ${endpoint.gatewayId}/${endpoint.connectorId}`} />
      <button type="submit" disabled={busy}>{action}<span class="visually-hidden"> (extension {endpoint.endpointId})</span></button>
      <Alert>{formError}</Alert>
    </form>
  )
}

export function MappingPage({ account, tenants }: { account: Account; tenants: Tenant[] }) {
  const [tenant, setTenant] = useTenantChoice(account, tenants)
  const [report, setReport] = useState<MappingReport>()
  const [people, setPeople] = useState<Person[]>([])
  const [error, setError] = useState('')
  const [done, setDone] = useState('')
  const listId = useId('people-emails')
  const canEdit = account.role === 'tenant-admin'
  const base = `/tenants/${encodeURIComponent(tenant)}`

  const load = async () => {
    if (!tenant) return
    try {
      const [r, p] = await Promise.all([api<MappingReport>('GET', `${base}/mapping`), api<{ people: Person[] }>('GET', `/people${q({ tenant })}`)])
      setReport(r)
      // Imported people no extension maps to yet are mapping targets too (the people list holds those the relay syncs).
      const known = new Set(p.people.map((x) => x.id))
      const imported = r.unmatchedEntra.flatMap((u) => (u.personId !== null && !known.has(u.personId)
        ? [{ id: u.personId, tenantId: tenant, email: u.email ?? u.userPrincipalName, displayName: u.displayName, syncMode: 'off' as const }]
        : []))
      setPeople([...p.people, ...imported])
      setError('')
    } catch (err) {
      setError(message(err))
    }
  }
  useEffect(() => {
    setReport(undefined)
    void load()
    // Another admin's change, an import or a PBX directory change shows up as an event line: read the report again.
    let timer: number | undefined
    const off = onLive((m) => {
      if (m.type !== 'event' || (m.event.tenantId !== null && m.event.tenantId !== tenant)) return
      if (!/^(mapping|directory|person)\./.test(m.event.kind)) return
      window.clearTimeout(timer)
      timer = window.setTimeout(() => void load(), 300)
    })
    return () => { off(); window.clearTimeout(timer) }
  }, [tenant])

  const changed = async (text: string) => {
    setDone(text)
    await load()
  }
  const remove = async (endpoint: string) => {
    setDone('')
    setError('')
    const [gatewayId = '', connectorId = '', endpointId = ''] = endpoint.split('/')
    try {
      await api('DELETE', `${base}/mappings/${[gatewayId, connectorId, endpointId].map(encodeURIComponent).join('/')}`)
      await changed(`The manual mapping of extension ${endpointId} is removed: it is mapped automatically again.`)
    } catch (err) {
      setError(message(err))
    }
  }

  const byId = new Map(people.map((p) => [p.id, p]))
  const byName = new Map((report?.endpoints ?? []).map((e) => [nameOf(e), e]))
  const endpointText = (name: string) => {
    const e = byName.get(name)
    return e ? `${e.endpointId}${e.name ? ` (${e.name})` : ''} on ${e.gatewayId}/${e.connectorId}` : name
  }
  const form = (name: string, action = 'Map manually') => {
    const e = byName.get(name)
    return canEdit && e ? <MapForm tenant={tenant} endpoint={e} people={people} listId={listId} action={action} onMapped={(text) => void changed(text)} /> : null
  }
  const needPerson = report ? [
    ...report.unmatchedPbx.map((u) => ({ endpoint: u.endpoint, why: `its PBX e-mail ${u.email} belongs to no imported Entra user.` })),
    ...report.withoutEmail.map((u) => ({ endpoint: u.endpoint, why: 'the PBX has no e-mail for it.' })),
    ...report.ambiguous.flatMap((a) => a.endpoints.map((endpoint) => ({ endpoint, why: `its PBX e-mail ${a.email} belongs to ${a.graphUserIds.length} Entra users, so it is not mapped automatically.` }))),
  ] : []

  return (
    <Page title="Mapping">
      {account.role === 'operator' && <Select label="Tenant" value={tenant} onChange={setTenant} options={tenants.map((t) => ({ value: t.id, label: t.name }))} />}
      <p>PBX extensions map to people automatically by e-mail. Map an extension by hand when its e-mail is missing or matches the wrong person; a manual mapping wins over automatic mapping and survives imports.</p>
      {!canEdit && <p class="muted">Operators see the mapping read-only: a tenant admin of {tenant || 'the tenant'} changes mappings.</p>}
      <Alert>{error}</Alert>
      <p role="status" class="done">{done}</p>
      <datalist id={listId}>{people.map((p) => <option key={p.id} value={p.email}>{p.displayName}</option>)}</datalist>
      {report && (
        <>
          <section class="card" aria-labelledby="map-summary">
            <h2 id="map-summary">Summary</h2>
            <ul data-testid="mapping-summary">
              <li>{report.imported ? `${report.directoryUsers} users imported from Entra ID.` : 'No import from Entra ID yet: extensions map to the Entra user with the same e-mail as the PBX reports.'}</li>
              <li>{report.endpoints.length} PBX extensions, {report.endpoints.filter((e) => e.personId !== null).length} mapped to a person, {report.manual.length} of them by hand.</li>
              <li>{needPerson.length === 0 ? 'Every extension has a person.' : `${needPerson.length} ${needPerson.length === 1 ? 'extension has' : 'extensions have'} no person.`}</li>
              <li>{report.unmatchedEntra.length === 0 ? 'Every imported Entra user has an extension.' : `${report.unmatchedEntra.length} imported Entra ${report.unmatchedEntra.length === 1 ? 'user has' : 'users have'} no extension.`}</li>
              <li>{report.ambiguous.length + report.sharedUsers.length === 0 ? 'No duplicates.' : `${report.ambiguous.length + report.sharedUsers.length} ${report.ambiguous.length + report.sharedUsers.length === 1 ? 'duplicate' : 'duplicates'} (see below).`}</li>
            </ul>
          </section>

          <section class="card" aria-labelledby="map-unmatched-pbx">
            <h2 id="map-unmatched-pbx">PBX extensions without a person</h2>
            {needPerson.length === 0 ? <p>None: every extension maps to a person.</p> : (
              <ul class="map-list" data-testid="unmatched-pbx">
                {needPerson.map((n) => (
                  <li key={n.endpoint} data-endpoint={n.endpoint}>
                    <p>Extension <strong>{endpointText(n.endpoint)}</strong> is not mapped: {n.why}</p>
                    {form(n.endpoint)}
                  </li>
                ))}
              </ul>
            )}
          </section>

          <section class="card" aria-labelledby="map-unmatched-entra">
            <h2 id="map-unmatched-entra">Entra users without an extension</h2>
            {!report.imported ? <p>Known after the first import from Entra ID.</p> : report.unmatchedEntra.length === 0 ? <p>None.</p> : (
              <ul data-testid="unmatched-entra">{report.unmatchedEntra.map((u) => <li key={u.graphUserId}>{u.displayName} ({u.userPrincipalName}): no PBX extension maps to this user. If one should, map it by hand above or below.</li>)}</ul>
            )}
          </section>

          <section class="card" aria-labelledby="map-duplicates">
            <h2 id="map-duplicates">Duplicates</h2>
            {report.ambiguous.length + report.sharedUsers.length === 0 ? <p>None.</p> : (
              <ul data-testid="duplicates">
                {report.ambiguous.map((a) => <li key={a.email}>The e-mail {a.email} belongs to {a.graphUserIds.length} Entra users, so extension{a.endpoints.length === 1 ? '' : 's'} {a.endpoints.map(endpointText).join(', ')} {a.endpoints.length === 1 ? 'is' : 'are'} not mapped: map {a.endpoints.length === 1 ? 'it' : 'them'} by hand, or give the users distinct addresses in Entra ID.</li>)}
                {report.sharedUsers.map((s) => <li key={s.graphUserId}>One Entra user answers to {s.emails.join(' and ')}, so extensions {s.endpoints.map(endpointText).join(', ')} all map to {personLabel(people.find((p) => byName.get(s.endpoints[0] ?? '')?.personId === p.id), null)}. If one is wrong, map it by hand under All extensions.</li>)}
              </ul>
            )}
          </section>

          <section class="card" aria-labelledby="map-manual">
            <h2 id="map-manual">Manual mappings</h2>
            {report.manual.length === 0 ? <p>None: every extension is mapped automatically.</p> : (
              <ul class="map-list" data-testid="manual-mappings">
                {report.manual.map((m) => {
                  const e = byName.get(m.endpoint)
                  return (
                    <li key={m.endpoint} data-endpoint={m.endpoint}>
                      <p>Extension <strong>{endpointText(m.endpoint)}</strong> → {personLabel(byId.get(m.personId), m.personId)}, set by {m.setBy} on {when(m.setAt)}.</p>
                      {canEdit && <button type="button" class="secondary" onClick={() => void remove(m.endpoint)}>Remove manual mapping<span class="visually-hidden"> of extension {e?.endpointId ?? m.endpoint}</span></button>}
                    </li>
                  )
                })}
              </ul>
            )}
          </section>

          <section aria-labelledby="map-all">
            <h2 id="map-all">All extensions</h2>
            {report.endpoints.length === 0 ? <p>No PBX extension known yet: they appear once a gateway reports its PBX directory.</p> : (
              <div class="table-wrap">
                <table>
                  <thead><tr><th scope="col">Extension</th><th scope="col">PBX e-mail</th><th scope="col">Person</th><th scope="col">How</th></tr></thead>
                  <tbody>
                    {report.endpoints.map((e) => (
                      <tr key={nameOf(e)} data-endpoint={nameOf(e)}>
                        <th scope="row">{e.endpointId}{e.name ? ` ${e.name}` : ''}<div class="muted">{e.gatewayId}/{e.connectorId}</div></th>
                        <td>{e.email ?? 'none'}</td>
                        <td>{personLabel(byId.get(e.personId ?? -1), e.personId)}</td>
                        <td>
                          {e.personId === null && e.via !== 'manual' ? 'not mapped (see above)' : (VIA[e.via ?? ''] ?? e.via ?? 'automatically')}
                          {e.personId !== null && e.via !== 'manual' && canEdit && (
                            <details>
                              <summary>Map to someone else<span class="visually-hidden"> (extension {e.endpointId})</span></summary>
                              {form(nameOf(e), 'Map to this person')}
                            </details>
                          )}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </section>
        </>
      )}
      {!report && !error && <p>Loading…</p>}
    </Page>
  )
}
