// A stock automerge-repo sync server, as the automerge-repo-sync-server package builds
// one: a Repo with NodeFS storage and the WebSocket server adapter. The interop tests
// use it as the "cloud" a daemon syncs through.
//
// usage: node sync-server.mjs <storage-dir> [port]
// Listens on 127.0.0.1 only and prints one JSON line:
// {"port": <n>, "peerId": "...", "storageId": "..."}.
import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

const [dir, portArg] = process.argv.slice(2)
if (!dir) {
  console.error("usage: node sync-server.mjs <storage-dir> [port]")
  process.exit(2)
}
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(portArg ?? 0) })
const peerId = `sync-server-${process.pid}`
// The stock server keeps every document it is sent and shares only on request.
const repo = new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  peerId,
  sharePolicy: async () => false,
})
wss.on("listening", async () => {
  // The id peers are told in the handshake. (Not `repo.storageId()`: called while the
  // repo is still starting, it races the repo's own first call and may invent a second id.)
  const { storageId } = await repo.networkSubsystem.peerMetadata
  console.log(JSON.stringify({ port: wss.address().port, peerId, storageId }))
})
const stop = () => {
  wss.close()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
