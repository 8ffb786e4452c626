// A hand-driven automerge-repo WebSocket client (the `ws` package, as the stock client
// adapter uses), for what a stock repo never sends.
//
// usage: node raw-socket.mjs <ws-url> join-without-versions
//          sends {type: "join", senderId} with no supportedProtocolVersions; prints the
//          answer: {"type": ..., "selectedProtocolVersion": ...}
//        node raw-socket.mjs <ws-url> oversized <bytes>
//          joins, then sends one binary message of <bytes> bytes; prints how the socket
//          closed: {"code": n, "reason": "..."}
import WebSocket from "ws"
import { encode, decode } from "cbor-x"

const [url, mode, sizeArg] = process.argv.slice(2)
const socket = new WebSocket(url)
socket.binaryType = "nodebuffer"
const join =
  mode === "join-without-versions"
    ? { type: "join", senderId: "raw-old-client" }
    : { type: "join", senderId: "raw-client", supportedProtocolVersions: ["1"] }

socket.on("open", () => socket.send(encode(join)))
socket.on("message", (data) => {
  const message = decode(data)
  if (mode === "join-without-versions") {
    console.log(JSON.stringify({ type: message.type, selectedProtocolVersion: message.selectedProtocolVersion ?? null }))
    socket.close(1000)
    return
  }
  if (message.type === "peer") {
    socket.send(Buffer.alloc(Number(sizeArg ?? 0), 7))
  }
})
socket.on("close", (code, reason) => {
  if (mode === "oversized") console.log(JSON.stringify({ code, reason: reason.toString() }))
  process.exit(0)
})
socket.on("error", (e) => console.error(`socket error: ${e.message}`))
