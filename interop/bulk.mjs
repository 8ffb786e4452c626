// The bulk late-arrival scenario: one app creates documents while another, given each
// link as soon as it exists (a shared link), opens it. Both are stock automerge-repo
// repos with the WebSocket client adapter, in this one process.
//
// usage: node bulk.mjs <creator-ws-url> <finder-ws-url> <count> [timeout-ms]
// Prints one JSON line: {"count", "found", "late", "ms"}; exits 1 if not all were found
// within the timeout. `late`: finds that first answered "unavailable" (the document had
// not reached the finder's server yet) and were completed by a later delivery.
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const [creatorUrl, finderUrl, countArg, timeoutArg] = process.argv.slice(2)
if (!creatorUrl || !finderUrl || !countArg) {
  console.error("usage: node bulk.mjs <creator-ws-url> <finder-ws-url> <count> [timeout-ms]")
  process.exit(2)
}
const count = Number(countArg)
const timeout = Number(timeoutArg ?? 600000)
const creator = new Repo({ network: [new WebSocketClientAdapter(creatorUrl)] })
const finder = new Repo({ network: [new WebSocketClientAdapter(finderUrl)] })
await Promise.all([creator.networkSubsystem.whenReady(), finder.networkSubsystem.whenReady()])
// Both connected (the adapters report ready once the server answered `join`).
await new Promise((r) => setTimeout(r, 200))

let found = 0
let late = 0
async function open(url) {
  try {
    await finder.find(url)
  } catch {
    const handle = finder.handles[url.replace(/^automerge:/, "")]
    late++
    await handle.whenReady()
  }
  found++
}

const started = performance.now()
const finds = []
for (let i = 0; i < count; i++) {
  const handle = creator.create({ seq: i, title: `checklist ${i}`, done: false })
  finds.push(open(handle.url))
  // Let the event loop breathe every so often, as an app creating in a loop would.
  if (i % 100 === 99) await new Promise((r) => setImmediate(r))
}
let timer
const outcome = await Promise.race([
  Promise.all(finds).then(() => "done"),
  new Promise((r) => {
    timer = setTimeout(() => r("timeout"), timeout)
  }),
])
clearTimeout(timer)
const ms = performance.now() - started
console.log(JSON.stringify({ count, found, late, ms: Math.round(ms) }))
process.exit(outcome === "done" ? 0 : 1)
