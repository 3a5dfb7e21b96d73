import type { JsonSchema } from './api.js'
import { Field } from './ui.js'

/** "applicationId" → "Application id", "sessionDurationS" → "Session duration (s)" */
export function labelOf(name: string): string {
  const unit = /S$/.test(name) ? ' (s)' : /Ms$/.test(name) ? ' (ms)' : ''
  const base = name.replace(/(Ms|S)$/, '').replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase()
  return `${base.charAt(0).toUpperCase()}${base.slice(1)}${unit}`
}

const isSecret = (name: string): boolean => /password|secret/i.test(name)

function enumValues(schema: JsonSchema): string[] | undefined {
  if (schema.anyOf && schema.anyOf.every((s) => s.const !== undefined)) return schema.anyOf.map((s) => String(s.const))
  if (schema.const !== undefined) return [String(schema.const)]
  return undefined
}

interface FormProps {
  schema: JsonSchema
  value: Record<string, unknown>
  onChange: (value: Record<string, unknown>) => void
  /** Secret fields holding a stored value: shown empty, "leave empty to keep". */
  secretsSet?: string[]
  errorField?: string | undefined
  errorMessage?: string | undefined
  /** Fields the form does not show (id, type). */
  skip?: string[]
  idPrefix: string
}

/** Renders a connector's fields from its adapter's JSON Schema: strings, numbers, booleans, enums, lists, tables. */
export function SchemaForm(props: FormProps) {
  const properties = Object.entries(props.schema.properties ?? {}).filter(([name]) => !(props.skip ?? []).includes(name))
  const required = new Set(props.schema.required ?? [])
  const main = properties.filter(([, s]) => s.default === undefined)
  const advanced = properties.filter(([, s]) => s.default !== undefined)
  const render = ([name, schema]: [string, JsonSchema]) => (
    <SchemaField key={name} name={name} schema={schema} required={required.has(name) && schema.default === undefined}
      value={props.value[name]} onChange={(v) => props.onChange({ ...props.value, [name]: v })}
      secretSet={(props.secretsSet ?? []).includes(name)} error={props.errorField === name ? props.errorMessage : undefined} idPrefix={props.idPrefix} />
  )
  return (
    <>
      {main.map(render)}
      {advanced.length > 0 ? (
        <details class="advanced">
          <summary>Advanced settings (defaults work for most sites)</summary>
          {advanced.map(render)}
        </details>
      ) : null}
    </>
  )
}

function SchemaField(props: { name: string; schema: JsonSchema; required: boolean; value: unknown; onChange: (v: unknown) => void; secretSet: boolean; error: string | undefined; idPrefix: string }) {
  const { name, schema } = props
  const label = `${labelOf(name)}${props.required ? '' : ' (optional)'}`
  const hint = [schema.description, schema.default !== undefined ? `Default: ${String(schema.default)}` : ''].filter(Boolean).join('. ') || undefined
  const choices = enumValues(schema)
  if (schema.type === 'boolean') {
    const checked = typeof props.value === 'boolean' ? props.value : schema.default === true
    return (
      <div class="field field-check">
        <input type="checkbox" id={`${props.idPrefix}-${name}`} checked={checked} onChange={(e) => props.onChange((e.currentTarget as HTMLInputElement).checked)} />
        <label for={`${props.idPrefix}-${name}`}>{labelOf(name)}</label>
      </div>
    )
  }
  if (choices) {
    return (
      <Field label={label} hint={hint} error={props.error}>
        {(attrs) => (
          <select {...attrs} name={name} value={typeof props.value === 'string' ? props.value : String(schema.default ?? choices[0] ?? '')} onChange={(e) => props.onChange((e.currentTarget as HTMLSelectElement).value)}>
            {choices.map((c) => <option key={c} value={c}>{c}</option>)}
          </select>
        )}
      </Field>
    )
  }
  if (schema.type === 'array' && schema.items?.type === 'object') {
    return <TableField {...props} label={label} hint={hint} />
  }
  if (schema.type === 'array') {
    const lines = Array.isArray(props.value) ? (props.value as unknown[]).map(String).join('\n') : ''
    return (
      <Field label={label} hint={`${hint ? `${hint}. ` : ''}One per line.`} error={props.error}>
        {(attrs) => <textarea {...attrs} name={name} rows={3} value={lines} onInput={(e) => props.onChange((e.currentTarget as HTMLTextAreaElement).value.split('\n').map((s) => s.trim()).filter(Boolean))} />}
      </Field>
    )
  }
  if (schema.type === 'object') {
    const value = (props.value && typeof props.value === 'object' ? props.value : {}) as Record<string, unknown>
    return (
      <fieldset class="nested">
        <legend>{labelOf(name)}</legend>
        <SchemaForm schema={schema} value={value} onChange={props.onChange} idPrefix={`${props.idPrefix}-${name}`} />
      </fieldset>
    )
  }
  const numeric = schema.type === 'integer' || schema.type === 'number'
  const secret = schema.writeOnly === true || isSecret(name)
  const text = props.value === undefined || props.value === null ? '' : String(props.value)
  return (
    <Field label={label} hint={secret && props.secretSet ? 'A value is stored (never shown). Leave empty to keep it while host, port and TLS settings stay the same; type to replace it.' : hint} error={props.error}>
      {(attrs) => (
        <input {...attrs} name={name} type={secret ? 'password' : numeric ? 'number' : 'text'} autoComplete={secret ? 'new-password' : 'off'}
          placeholder={secret && props.secretSet ? '•••••• (stored)' : schema.default !== undefined ? String(schema.default) : ''}
          required={props.required && !(secret && props.secretSet)} value={text}
          {...(schema.minimum !== undefined ? { min: schema.minimum } : {})} {...(schema.maximum !== undefined ? { max: schema.maximum } : {})}
          step={schema.type === 'number' ? 'any' : undefined}
          onInput={(e) => {
            const raw = (e.currentTarget as HTMLInputElement).value
            props.onChange(numeric ? (raw === '' ? undefined : Number(raw)) : raw)
          }} />
      )}
    </Field>
  )
}

function TableField(props: { name: string; schema: JsonSchema; value: unknown; onChange: (v: unknown) => void; label: string; hint: string | undefined; error: string | undefined; idPrefix: string }) {
  const rows = Array.isArray(props.value) ? (props.value as Array<Record<string, unknown>>) : []
  const itemSchema = props.schema.items ?? {}
  const columns = Object.entries(itemSchema.properties ?? {})
  const required = new Set(itemSchema.required ?? [])
  const set = (index: number, key: string, v: string) => props.onChange(rows.map((row, i) => (i === index ? { ...row, [key]: v === '' ? undefined : v } : row)))
  return (
    <fieldset class="table-field" aria-describedby={props.error ? `${props.idPrefix}-${props.name}-error` : undefined}>
      <legend>{props.label}</legend>
      {props.hint ? <p class="hint">{props.hint}</p> : null}
      {rows.length === 0 ? <p class="hint">None yet.</p> : null}
      {rows.map((row, index) => (
        <div class="table-row" key={index}>
          {columns.map(([key]) => {
            const id = `${props.idPrefix}-${props.name}-${index}-${key}`
            return (
              <div class="field" key={key}>
                <label for={id}>{`${labelOf(key)} ${index + 1}${required.has(key) ? '' : ' (optional)'}`}</label>
                <input id={id} name={`${props.name}.${index}.${key}`} type={key === 'email' ? 'email' : 'text'} value={row[key] === undefined ? '' : String(row[key])} required={required.has(key)} onInput={(e) => set(index, key, (e.currentTarget as HTMLInputElement).value)} />
              </div>
            )
          })}
          <button type="button" class="secondary" onClick={() => props.onChange(rows.filter((_, i) => i !== index))}>Remove row {index + 1}</button>
        </div>
      ))}
      <button type="button" class="secondary" onClick={() => props.onChange([...rows, {}])}>Add a row to {labelOf(props.name).toLowerCase()}</button>
      {props.error ? <p class="error" id={`${props.idPrefix}-${props.name}-error`} role="alert">{props.error}</p> : null}
    </fieldset>
  )
}
