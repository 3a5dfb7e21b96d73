import type { ComponentChildren, JSX } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { ApiError } from './api.js'

let nextId = 0
export const useId = (prefix: string): string => useState(() => `${prefix}-${++nextId}`)[0]

export const message = (err: unknown): string => (err instanceof ApiError || err instanceof Error ? err.message : String(err))

/** An error for the whole form or page, announced to screen readers. */
export function Alert({ id, children }: { id?: string; children: ComponentChildren }) {
  if (!children) return null
  return <p class="alert" role="alert" id={id}>{children}</p>
}

export function Field(props: {
  label: string; value: string; onInput: (value: string) => void; type?: string; error?: string | undefined; hint?: string
  autocomplete?: string; required?: boolean; name?: string; placeholder?: string
  /** The id of a <datalist> of suggestions. */
  list?: string
}) {
  const id = useId('f')
  const describedBy = [props.hint ? `${id}-hint` : '', props.error ? `${id}-err` : ''].filter(Boolean).join(' ') || undefined
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <input id={id} name={props.name} type={props.type ?? 'text'} value={props.value} required={props.required} placeholder={props.placeholder} list={props.list}
        autocomplete={props.autocomplete} aria-invalid={props.error ? 'true' : undefined} aria-describedby={describedBy}
        onInput={(e) => props.onInput((e.currentTarget as HTMLInputElement).value)} />
      {props.hint && <small id={`${id}-hint`}>{props.hint}</small>}
      {props.error && <span class="field-error" id={`${id}-err`} role="alert">{props.error}</span>}
    </div>
  )
}

export function Select(props: { label: string; value: string; onChange: (value: string) => void; options: Array<{ value: string; label: string }>; disabled?: boolean; hideLabel?: boolean }) {
  const id = useId('s')
  return (
    <div class="field">
      <label for={id} class={props.hideLabel ? 'visually-hidden' : undefined}>{props.label}</label>
      <select id={id} value={props.value} disabled={props.disabled} onChange={(e) => props.onChange((e.currentTarget as HTMLSelectElement).value)}>
        {props.options.map((o) => <option value={o.value} key={o.value}>{o.label}</option>)}
      </select>
    </div>
  )
}

const STATE_LABEL = { online: 'Online', connected: 'Connected', offline: 'Offline' } as const
export function StateBadge({ state }: { state: keyof typeof STATE_LABEL }) {
  return <span class={`badge badge-${state}`}>{STATE_LABEL[state]}</span>
}

export function when(iso: string | null | undefined): string {
  if (!iso) return 'never'
  const d = new Date(iso)
  return d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' })
}

export function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return 'never'
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} d ago`
}

/** Re-renders every few seconds so "ago" texts stay true. */
export function useNow(everyMs = 5000): number {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const t = window.setInterval(() => setNow(Date.now()), everyMs)
    return () => window.clearInterval(t)
  }, [everyMs])
  return now
}

/** A line chart of one series over time, drawn as SVG by hand; the data also sits in a table for screen readers. */
export function LineChart({ title, unit, points, max }: { title: string; unit: string; points: Array<{ t: number; v: number }>; max?: number }) {
  const w = 560
  const h = 160
  const pad = { l: 44, r: 10, t: 10, b: 24 }
  const id = useId('chart')
  if (points.length === 0) return <figure class="chart"><figcaption>{title}</figcaption><p class="muted">No samples yet.</p></figure>
  const t0 = points[0]!.t
  const t1 = Math.max(points[points.length - 1]!.t, t0 + 1)
  const top = max ?? Math.max(1, ...points.map((p) => p.v)) * 1.1
  const x = (t: number) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r)
  const y = (v: number) => pad.t + (1 - v / top) * (h - pad.t - pad.b)
  const path = points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ')
  const last = points[points.length - 1]!
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1))
  return (
    <figure class="chart" aria-labelledby={`${id}-cap`}>
      <figcaption id={`${id}-cap`}>{title}: {fmt(last.v)} {unit} now</figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${title} over time, latest ${fmt(last.v)} ${unit}`} preserveAspectRatio="none">
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={pad.l} x2={w - pad.r} y1={y(top * f)} y2={y(top * f)} class="grid" />
            <text x={pad.l - 6} y={y(top * f) + 4} text-anchor="end" class="axis">{fmt(top * f)}</text>
          </g>
        ))}
        <text x={pad.l} y={h - 6} class="axis">{new Date(t0).toLocaleTimeString()}</text>
        <text x={w - pad.r} y={h - 6} text-anchor="end" class="axis">{new Date(t1).toLocaleTimeString()}</text>
        <path d={path} class="line" />
        {points.length === 1 && <circle cx={x(last.t)} cy={y(last.v)} r="3" class="dot" />}
      </svg>
    </figure>
  )
}

export function Page({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  useEffect(() => { document.title = `${title} · PBX presence console` }, [title])
  return (
    <section class="page">
      <div class="page-head"><h1 tabIndex={-1} id="page-title">{title}</h1>{actions}</div>
      {children}
    </section>
  )
}

export type Submit = JSX.TargetedEvent<HTMLFormElement, Event>
