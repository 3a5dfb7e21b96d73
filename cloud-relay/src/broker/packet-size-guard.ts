import { Duplex } from 'node:stream'

/**
 * Reads MQTT fixed headers as bytes arrive and reports a packet whose remaining length is over `limit` before a
 * byte of its body is passed on. aedes (through mqtt-packet) buffers a whole packet before it looks at it and has
 * no size option: one 250 MB PUBLISH grew the relay by 450 MB before it was refused.
 */
export class PacketLengthScanner {
  readonly #limit: number
  #state: 'header' | 'length' | 'body' = 'header'
  #length = 0
  #multiplier = 1
  #lengthBytes = 0
  #left = 0

  constructor(limit: number) {
    this.#limit = limit
  }

  /** Feeds bytes; returns the announced length of the first packet over the limit (or malformed: -1), else undefined. */
  feed(chunk: Buffer): number | undefined {
    let i = 0
    while (i < chunk.length) {
      if (this.#state === 'body') {
        const take = Math.min(this.#left, chunk.length - i)
        this.#left -= take
        i += take
        if (this.#left === 0) this.#state = 'header'
        continue
      }
      const byte = chunk[i++] ?? 0
      if (this.#state === 'header') {
        this.#state = 'length'
        this.#length = 0
        this.#multiplier = 1
        this.#lengthBytes = 0
        continue
      }
      this.#length += (byte & 0x7f) * this.#multiplier
      this.#multiplier *= 128
      this.#lengthBytes++
      if (byte & 0x80) {
        if (this.#lengthBytes >= 4) return -1 // a remaining length has at most four bytes
        continue
      }
      if (this.#length > this.#limit) return this.#length
      this.#left = this.#length
      this.#state = this.#left === 0 ? 'header' : 'body'
    }
    return undefined
  }
}

/**
 * Puts a PacketLengthScanner in front of a connection: the returned stream is what the MQTT broker reads and
 * writes. When a packet announces more than `limit` bytes, `onTooLarge(announced)` is called and the connection is
 * destroyed at once, so nothing of the packet is buffered.
 */
export function guardPacketSize(inner: Duplex, limit: number, onTooLarge: (announced: number) => void): Duplex {
  const scanner = new PacketLengthScanner(limit)
  const outer = new Duplex({
    read() {
      inner.resume()
    },
    write(chunk: Buffer, _encoding, callback) {
      if (inner.destroyed) return callback()
      inner.write(chunk, (err) => callback(err ?? null))
    },
    final(callback) {
      inner.end()
      callback()
    },
    destroy(err, callback) {
      inner.destroy()
      callback(err)
    },
  })
  inner.on('data', (chunk: Buffer) => {
    const announced = scanner.feed(chunk)
    if (announced !== undefined) {
      onTooLarge(announced)
      inner.destroy()
      outer.destroy()
      return
    }
    if (!outer.push(chunk)) inner.pause()
  })
  inner.on('end', () => outer.push(null))
  inner.on('error', (err) => outer.destroy(err))
  inner.on('close', () => outer.destroy())
  return outer
}
