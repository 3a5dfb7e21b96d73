import { render } from 'preact'

function App() {
  return <main><h1>PBX presence: cloud console</h1><p>Setting up…</p></main>
}

const root = document.getElementById('app')
if (root) render(<App />, root)
