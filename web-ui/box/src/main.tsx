import { render } from 'preact'

function App() {
  return <main><h1>PBX presence gateway</h1><p>Setting up…</p></main>
}

const root = document.getElementById('app')
if (root) render(<App />, root)
