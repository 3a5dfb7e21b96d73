// The image's HEALTHCHECK: healthy when HEALTHCHECK_URL (the gateway's setup page by default, the relay's /healthz
// when it sets the variable) answers below 500 within 4 s. Plain JavaScript: the image carries no tsx.
// The setup page's certificate is made by the box at first start and no CA signs it; this probe only asks
// whether the local process answers, so it does not verify it (it never leaves the container's loopback).
import { request as httpsRequest } from 'node:https'
import { request as httpRequest } from 'node:http'

const url = new URL(process.env.HEALTHCHECK_URL ?? 'https://127.0.0.1:8443/')
const request = url.protocol === 'https:' ? httpsRequest : httpRequest
const req = request(url, { method: 'GET', timeout: 4000, rejectUnauthorized: false, headers: { host: 'localhost' } }, (res) => {
  res.resume()
  const ok = (res.statusCode ?? 500) < 500
  process.stdout.write(`${url.href} answered ${res.statusCode}\n`)
  process.exit(ok ? 0 : 1)
})
req.on('timeout', () => req.destroy(new Error('no answer within 4 s')))
req.on('error', (err) => {
  process.stdout.write(`${url.href}: ${err.message}\n`)
  process.exit(1)
})
req.end()
