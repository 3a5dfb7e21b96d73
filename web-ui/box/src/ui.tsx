import type { ComponentChildren, JSX } from 'preact'
import { useId } from 'preact/hooks'

/** A labelled field; its error is tied to the input (aria-describedby) and announced. */
export function Field(props: {
  label: string
  hint?: string
  error?: string | undefined
  children: (attrs: { id: string; 'aria-describedby'?: string; 'aria-invalid'?: boolean }) => JSX.Element
}) {
  const id = useId()
  const hintId = `${id}-hint`
  const errorId = `${id}-error`
  const describedBy = [props.hint ? hintId : '', props.error ? errorId : ''].filter(Boolean).join(' ')
  return (
    <div class={`field${props.error ? ' field-invalid' : ''}`}>
      <label for={id}>{props.label}</label>
      {props.children({ id, ...(describedBy ? { 'aria-describedby': describedBy } : {}), ...(props.error ? { 'aria-invalid': true } : {}) })}
      {props.hint ? <p class="hint" id={hintId}>{props.hint}</p> : null}
      {props.error ? <p class="error" id={errorId} role="alert">{props.error}</p> : null}
    </div>
  )
}

export function Alert(props: { kind: 'error' | 'ok' | 'info'; children: ComponentChildren }) {
  return <div class={`alert alert-${props.kind}`} role={props.kind === 'error' ? 'alert' : 'status'}>{props.children}</div>
}

export function Badge(props: { state: string; children?: ComponentChildren }) {
  return <span class={`badge badge-${props.state}`}>{props.children ?? props.state}</span>
}

export function since(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  return `${Math.round(s / 3600)} h ago`
}

export function time(ms: number): string {
  return new Date(ms).toLocaleTimeString()
}
