import { useEffect, useState } from 'preact/hooks'
import { api, q, type Account, type EventLine, type EventsPage, type Person, type Tenant } from './api.js'
import { onLive } from './live.js'
import { Alert, Field, Page, Select, message, when, type Submit } from './ui.js'

interface Filters { tenant: string; person: string; kind: string; from: string; to: string }

const isoOf = (local: string) => (local ? new Date(local).toISOString() : undefined)

export function EventsPage({ account, tenants }: { account: Account; tenants: Tenant[] }) {
  const [draft, setDraft] = useState<Filters>({ tenant: account.tenantId ?? '', person: '', kind: '', from: '', to: '' })
  const [filters, setFilters] = useState<Filters>(draft)
  const [people, setPeople] = useState<Person[]>([])
  const [events, setEvents] = useState<EventLine[]>([])
  const [next, setNext] = useState<number | null>(null)
  const [error, setError] = useState('')
  const path = (f: Filters, before?: number) => {
    const common = { kind: f.kind || undefined, from: isoOf(f.from), to: isoOf(f.to), limit: 100, before }
    return f.person ? `/people/${f.person}/events${q(common)}` : `/events${q({ tenant: f.tenant || undefined, ...common })}`
  }
  useEffect(() => { api<{ people: Person[] }>('GET', `/people${q({ tenant: draft.tenant || undefined })}`).then((r) => setPeople(r.people), () => undefined) }, [draft.tenant])
  useEffect(() => {
    setError('')
    api<EventsPage>('GET', path(filters)).then((r) => { setEvents(r.events); setNext(r.nextBefore) }, (err) => setError(message(err)))
    return onLive((m) => {
      if (m.type !== 'event') return
      const e = m.event
      if (filters.tenant && e.tenantId !== filters.tenant) return
      if (filters.person && String(e.personId) !== filters.person) return
      if (filters.kind && !e.kind.startsWith(filters.kind)) return
      if (filters.to) return // a closed range gets no new lines
      setEvents((list) => (list.some((x) => x.id === e.id) ? list : [e, ...list]))
    })
  }, [filters])
  const older = async () => {
    if (next === null) return
    try {
      const r = await api<EventsPage>('GET', path(filters, next))
      setEvents((list) => [...list, ...r.events])
      setNext(r.nextBefore)
    } catch (err) {
      setError(message(err))
    }
  }
  const apply = (e: Submit) => { e.preventDefault(); setFilters({ ...draft }) }
  const set = (k: keyof Filters) => (v: string) => setDraft((d) => ({ ...d, [k]: v }))
  return (
    <Page title="Event log">
      <form class="filters" onSubmit={apply} aria-label="Filters">
        {account.role === 'operator' && <Select label="Tenant" value={draft.tenant} onChange={set('tenant')} options={[{ value: '', label: 'All tenants' }, ...tenants.map((t) => ({ value: t.id, label: t.name }))]} />}
        <Select label="Person" value={draft.person} onChange={set('person')} options={[{ value: '', label: 'Everyone' }, ...people.map((p) => ({ value: String(p.id), label: p.displayName }))]} />
        <Field label="Kind starts with" value={draft.kind} onInput={set('kind')} placeholder="pbx. or teams.set" />
        <Field label="From" type="datetime-local" value={draft.from} onInput={set('from')} />
        <Field label="To" type="datetime-local" value={draft.to} onInput={set('to')} />
        <button type="submit">Apply filters</button>
      </form>
      <Alert>{error}</Alert>
      {events.length === 0 ? <p>No events match these filters.</p> : (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Event log, newest first (updates live)</caption>
            <thead><tr><th scope="col">Time</th><th scope="col">Kind</th><th scope="col">What happened</th><th scope="col">Where</th></tr></thead>
            <tbody>{events.map((e) => <tr key={e.id}><td><time dateTime={e.at}>{when(e.at)}</time></td><td class="kind">{e.kind}</td><td>{e.message}</td><td>{[e.tenantId, e.gatewayId].filter(Boolean).join(' · ')}{e.personId !== null && <> · <a href={`#/people/${e.personId}`}>person {e.personId}</a></>}</td></tr>)}</tbody>
          </table>
        </div>
      )}
      {next !== null && <button type="button" onClick={older}>Load older events</button>}
    </Page>
  )
}
