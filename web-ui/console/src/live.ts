import type { EventLine, Gateway } from './api.js'

export type LiveMessage = { type: 'hello'; username: string } | { type: 'gateway'; gateway: Gateway } | { type: 'event'; event: EventLine }
type Listener = (message: LiveMessage) => void
type StatusListener = (connected: boolean) => void

const listeners = new Set<Listener>()
const statusListeners = new Set<StatusListener>()
let socket: WebSocket | undefined
let retry: number | undefined
let wanted = false
let delayMs = 1000

/** One socket per page to /api/v1/live; reconnects with backoff while signed in. */
export function connectLive(): void {
  wanted = true
  if (socket) return
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/live`)
  socket = ws
  ws.onopen = () => { delayMs = 1000; for (const l of statusListeners) l(true) }
  ws.onmessage = (e) => {
    let message: LiveMessage
    try {
      message = JSON.parse(String(e.data)) as LiveMessage
    } catch {
      return
    }
    for (const l of listeners) l(message)
  }
  ws.onclose = () => {
    socket = undefined
    for (const l of statusListeners) l(false)
    if (wanted) {
      retry = window.setTimeout(connectLive, delayMs)
      delayMs = Math.min(delayMs * 2, 15_000)
    }
  }
}

export function disconnectLive(): void {
  wanted = false
  if (retry !== undefined) window.clearTimeout(retry)
  socket?.close()
  socket = undefined
}

export function onLive(listener: Listener): () => void {
  listeners.add(listener)
  return () => { listeners.delete(listener) }
}

export function onLiveStatus(listener: StatusListener): () => void {
  statusListeners.add(listener)
  return () => { statusListeners.delete(listener) }
}
