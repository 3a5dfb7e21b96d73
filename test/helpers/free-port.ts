import { createServer } from 'node:net'

/**
 * A 127.0.0.1 port nothing listens on, for "connection refused" cases and for services that must know their port
 * before they start. It is drawn at random below the kernel's ephemeral range (32768 and up here), because a
 * port from listen(0) comes from that range and, once released, the next listen(0) or outgoing connection of a
 * parallel test can take it (seen as EADDRINUSE, or as a "refused" port that answered).
 */
export async function closedPort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    if (await canBind(port)) return port
  }
  throw new Error('no free port found between 20000 and 32000 on 127.0.0.1 after 50 tries')
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}
