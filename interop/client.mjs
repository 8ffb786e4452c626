// A stock automerge-repo client (the WebSocket client adapter), driven line by line so a
// Rust test can script it.
//
// usage: node client.mjs <ws-url>
// stdin: one JSON command per line; stdout: one JSON reply per line, in order.
//   {"cmd":"create","content":{...}}               -> {"ok":true,"url":"automerge:..."}
//   {"cmd":"read","url":"automerge:..."}           -> {"ok":true,"doc":{...}}
//   {"cmd":"set","url":...,"path":["a"],"value":v} -> {"ok":true}
//   {"cmd":"wait","url":...,"path":["a"],"value":v,"timeout_ms":n}
//                                                  -> {"ok":true} once doc[path] equals v
//   {"cmd":"quit"}
// Any failure: {"ok":false,"error":"..."}; the program keeps reading.
import { createInterface } from "node:readline"
import { isDeepStrictEqual } from "node:util"
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const url = process.argv[2]
if (!url) {
  console.error("usage: node client.mjs <ws-url>")
  process.exit(2)
}
const repo = new Repo({ network: [new WebSocketClientAdapter(url)] })

const at = (doc, path) => path.reduce((v, k) => (v == null ? undefined : v[k]), doc)
const plain = (v) => JSON.parse(JSON.stringify(v ?? null))

async function handle(msg) {
  switch (msg.cmd) {
    case "create": {
      const handle = repo.create(msg.content ?? {})
      return { url: handle.url }
    }
    case "read": {
      const handle = await repo.find(msg.url)
      return { doc: plain(handle.doc()) }
    }
    case "set": {
      const handle = await repo.find(msg.url)
      handle.change((d) => {
        let target = d
        for (const k of msg.path.slice(0, -1)) target = target[k]
        target[msg.path[msg.path.length - 1]] = msg.value
      })
      return {}
    }
    case "wait": {
      const handle = await repo.find(msg.url)
      const deadline = Date.now() + (msg.timeout_ms ?? 30000)
      for (;;) {
        const now = plain(at(handle.doc(), msg.path))
        if (isDeepStrictEqual(now, msg.value)) return {}
        if (Date.now() > deadline) throw new Error(`timed out; value is ${JSON.stringify(now)}`)
        await new Promise((r) => setTimeout(r, 20))
      }
    }
    case "quit":
      process.exit(0)
    default:
      throw new Error(`unknown command ${msg.cmd}`)
  }
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let reply
  try {
    reply = { ok: true, ...(await handle(JSON.parse(line))) }
  } catch (e) {
    reply = { ok: false, error: String(e?.message ?? e) }
  }
  console.log(JSON.stringify(reply))
}
process.exit(0)
