// A stock automerge-repo client (the WebSocket client adapter), driven line by line so a
// Rust test can script it.
//
// usage: node client.mjs <ws-url> [--remote-heads] [--offline]
// (--remote-heads: the repo gossips remote heads, enableRemoteHeadsGossiping;
//  --offline: not connected until the `connect` command)
// stdin: one JSON command per line; stdout: one JSON reply per line, in order.
//   {"cmd":"create","content":{...}}               -> {"ok":true,"url":"automerge:..."}
//   {"cmd":"read","url":"automerge:..."}           -> {"ok":true,"doc":{...}}
//   {"cmd":"set","url":...,"path":["a"],"value":v} -> {"ok":true}
//   {"cmd":"wait","url":...,"path":["a"],"value":v,"timeout_ms":n}
//                                                  -> {"ok":true} once doc[path] equals v
//   {"cmd":"ready","url":...,"timeout_ms":n}       -> {"ok":true,"doc":{...}} once the
//        handle is ready, even after find() said "unavailable" (a late delivery)
//   {"cmd":"listen","url":...}                     -> {"ok":true}; ephemeral messages
//        about the document are recorded from now on
//   {"cmd":"broadcast","url":...,"message":v}      -> {"ok":true} (handle.broadcast)
//   {"cmd":"received","url":...}                   -> {"ok":true,"messages":[{senderId,message}]}
//   {"cmd":"subscribe_remotes","storage_ids":[...]} -> {"ok":true}
//   {"cmd":"remote_heads","url":...,"storage_id":s} -> {"ok":true,"heads":[...]|null}
//   {"cmd":"connect"}                              -> {"ok":true} (after --offline)
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
const remoteHeads = process.argv.includes("--remote-heads")
const offline = process.argv.includes("--offline")
const repo = new Repo({
  network: offline ? [] : [new WebSocketClientAdapter(url)],
  enableRemoteHeadsGossiping: remoteHeads,
})
const received = new Map() // documentId -> [{senderId, message}]

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
    case "ready": {
      const timeout = msg.timeout_ms ?? 30000
      let handle
      try {
        handle = await repo.find(msg.url)
      } catch (e) {
        // automerge-repo 2.x never asks again: the handle becomes ready only if a peer
        // offers the document later.
        handle = repo.handles[msg.url.replace(/^automerge:/, "")]
        if (!handle) throw e
        let timer
        await Promise.race([
          handle.whenReady(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`still ${handle.state} after ${timeout} ms`)), timeout)
          }),
        ])
        clearTimeout(timer)
      }
      return { doc: plain(handle.doc()) }
    }
    case "listen": {
      const handle = await repo.find(msg.url)
      if (!received.has(handle.documentId)) {
        received.set(handle.documentId, [])
        handle.on("ephemeral-message", (e) =>
          received.get(handle.documentId).push({ senderId: e.senderId, message: plain(e.message) }),
        )
      }
      return {}
    }
    case "broadcast": {
      const handle = await repo.find(msg.url)
      handle.broadcast(msg.message)
      return {}
    }
    case "received": {
      const handle = await repo.find(msg.url)
      return { messages: received.get(handle.documentId) ?? [] }
    }
    case "subscribe_remotes":
      repo.subscribeToRemotes(msg.storage_ids)
      return {}
    case "remote_heads": {
      const handle = await repo.find(msg.url)
      return { heads: handle.getSyncInfo(msg.storage_id)?.lastHeads ?? null }
    }
    case "connect":
      repo.networkSubsystem.addNetworkAdapter(new WebSocketClientAdapter(url))
      return {}
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
