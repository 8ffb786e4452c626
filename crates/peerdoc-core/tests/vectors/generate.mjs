// Generates peerdoc's wire golden vectors with the real cbor-x, configured as
// automerge-repo configures it (packages/automerge-repo/src/helpers/cbor.ts:
// `new Encoder({ tagUint8Array: false, useRecords: false })`).
//
// Every message object below is built with its keys in the order in which
// automerge-repo's own code builds that message (see README.md in this folder for
// the file each order comes from). cbor-x writes a JS object's keys in property
// insertion order, so the order here is the order on the wire.
//
// Usage: npm ci && node generate.mjs   (writes <name>.hex next to this file)
//
// The Rust golden tests (../wire_golden.rs) read the .hex files and never need Node.

import { createHash } from "node:crypto"
import { writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Encoder } from "cbor-x"

const encoder = new Encoder({ tagUint8Array: false, useRecords: false })
const here = dirname(fileURLToPath(import.meta.url))

// --- bs58check, as automerge-repo uses for document ids and URL heads ---------
const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
function sha256(bytes) {
  return new Uint8Array(createHash("sha256").update(bytes).digest())
}
function bs58check(payload) {
  const checksum = sha256(sha256(payload)).slice(0, 4)
  const bytes = new Uint8Array([...payload, ...checksum])
  let n = 0n
  for (const b of bytes) n = n * 256n + BigInt(b)
  let out = ""
  while (n > 0n) {
    out = ALPHABET[Number(n % 58n)] + out
    n /= 58n
  }
  for (const b of bytes) {
    if (b !== 0) break
    out = "1" + out
  }
  return out
}
function filled(len, start) {
  return new Uint8Array(Array.from({ length: len }, (_, i) => (start + i) & 0xff))
}

// --- the fixed inputs (the Rust test builds the same values) -------------------
const documentId = bs58check(filled(16, 0x10)) // bytes 0x10..=0x1f
const alice = "alice-peer-3f1c"
const bob = "bob-peer-9a2e"
const storageA = "0b3a7f52-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
const storageB = "7d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a"
const headA = bs58check(filled(32, 0xa0))
const headB = bs58check(filled(32, 0x40))
const syncData = filled(5, 0x42)
const bigData = filled(300, 0)
const timestamp = 1763764800123 // a Date.now(): above 2^32, so cbor-x writes a float64

const vectors = {
  // WebSocketClientAdapter.ts joinMessage(); metadata from Repo.ts myPeerMetadata
  join: {
    type: "join",
    senderId: alice,
    peerMetadata: { storageId: storageA, isEphemeral: false },
    supportedProtocolVersions: ["1"],
  },
  // A repo without storage: Repo.ts builds `storageId: await storageSubsystem?.id()`,
  // which is undefined, and cbor-x writes the key with CBOR `undefined`.
  join_ephemeral: {
    type: "join",
    senderId: alice,
    peerMetadata: { storageId: undefined, isEphemeral: true },
    supportedProtocolVersions: ["1"],
  },
  // peerdoc's capability offer rides in peerMetadata after upstream's two keys.
  join_peerdoc: {
    type: "join",
    senderId: alice,
    peerMetadata: { storageId: storageA, isEphemeral: false, peerdoc: { version: 1 } },
    supportedProtocolVersions: ["1"],
  },
  // WebSocketServerAdapter.ts receiveMessage(), reply to a join
  peer: {
    type: "peer",
    senderId: bob,
    peerMetadata: { storageId: storageB, isEphemeral: false },
    selectedProtocolVersion: "1",
    targetId: alice,
  },
  peer_peerdoc: {
    type: "peer",
    senderId: bob,
    peerMetadata: { storageId: storageB, isEphemeral: false, peerdoc: { version: 1 } },
    selectedProtocolVersion: "1",
    targetId: alice,
  },
  // automerge-repo-network-messagechannel/src/index.ts disconnect()
  leave: { type: "leave", senderId: alice },
  // DocSynchronizer.ts #sendSyncMessage(), then NetworkSubsystem.ts send() appends senderId
  request: { type: "request", targetId: bob, documentId, data: syncData, senderId: alice },
  sync: { type: "sync", targetId: bob, data: syncData, documentId, senderId: alice },
  sync_large: { type: "sync", targetId: bob, data: bigData, documentId, senderId: alice },
  // DocSynchronizer.ts (doc-unavailable), then NetworkSubsystem.ts send()
  doc_unavailable: { type: "doc-unavailable", documentId, targetId: bob, senderId: alice },
  // DocSynchronizer.ts #sendEphemeralMessage(), then NetworkSubsystem.ts send() appends
  // count, sessionId and senderId
  ephemeral: {
    type: "ephemeral",
    targetId: bob,
    documentId,
    data: new Uint8Array([0xa1, 0x61, 0x78, 0x01]),
    count: 1,
    sessionId: "session-5c2b",
    senderId: alice,
  },
  ephemeral_big_count: {
    type: "ephemeral",
    targetId: bob,
    documentId,
    data: new Uint8Array([0x01]),
    count: 5000000000,
    sessionId: "session-5c2b",
    senderId: alice,
  },
  // Repo.ts "change-remote-subs" handler, then NetworkSubsystem.ts send()
  remote_subscription_change: {
    type: "remote-subscription-change",
    targetId: bob,
    add: [storageA, storageB],
    remove: [],
    senderId: alice,
  },
  // Repo.ts "notify-remote-heads" handler, then NetworkSubsystem.ts send()
  remote_heads_changed: {
    type: "remote-heads-changed",
    targetId: bob,
    documentId,
    newHeads: { [storageA]: { heads: [headA, headB], timestamp } },
    senderId: alice,
  },
  // Upstream only ever sends one entry; peerdoc writes several in sorted order.
  remote_heads_changed_two: {
    type: "remote-heads-changed",
    targetId: bob,
    documentId,
    newHeads: {
      [storageA]: { heads: [headA], timestamp: 42 },
      [storageB]: { heads: [], timestamp: 70000 },
    },
    senderId: alice,
  },
  // WebSocketServerAdapter.ts receiveMessage(), unsupported protocol version
  error: {
    type: "error",
    senderId: bob,
    message: "unsupported protocol version",
    targetId: alice,
  },
  // The README's shape: { type, message }. A long non-ASCII message exercises the
  // two-byte text length header.
  error_bare: {
    type: "error",
    message: "défaut: " + "ünïcödé ".repeat(40),
  },
  // peerdoc extensions: same shape as upstream's per-document messages.
  peerdoc_reconcile: {
    type: "peerdoc/reconcile",
    targetId: bob,
    data: new Uint8Array([0x00, 0x01, 0xfe, 0xff]),
    senderId: alice,
  },
  peerdoc_deleted: { type: "peerdoc/deleted", targetId: bob, documentId, senderId: alice },
  // One offered document: its 16 id bytes, priority 5 (big-endian i32), a 16-byte digest.
  peerdoc_offer: {
    type: "peerdoc/offer",
    targetId: bob,
    data: new Uint8Array([...filled(16, 0x10), 0, 0, 0, 5, ...filled(16, 0xa0)]),
    senderId: alice,
  },
}

// Decode-only inputs: peerdoc must accept them, but does not produce these bytes.
const decodeOnly = {
  // The README names the key `metadata`.
  join_metadata_key: {
    type: "join",
    senderId: alice,
    supportedProtocolVersions: ["1"],
    metadata: { storageId: storageA, isEphemeral: false },
  },
  // Keys in an unusual order, plus unknown keys (one deeply nested) to ignore.
  sync_reordered: {
    senderId: alice,
    futureField: { a: [1, [2, [3, { b: null }]]], c: new Uint8Array([9]) },
    data: syncData,
    documentId,
    targetId: bob,
    type: "sync",
    zzz: -5,
  },
  // Repo.ts subscribeToRemotes path: `remove` is undefined.
  remote_subscription_change_add_only: {
    type: "remote-subscription-change",
    targetId: bob,
    add: [storageA],
    remove: undefined,
    senderId: alice,
  },
}

function write(name, message) {
  const hex = Buffer.from(encoder.encode(message)).toString("hex")
  writeFileSync(join(here, `${name}.hex`), hex + "\n")
  console.log(`${name}: ${hex.length / 2} bytes`)
}

for (const [name, message] of Object.entries(vectors)) write(name, message)
for (const [name, message] of Object.entries(decodeOnly)) write(`decode_only.${name}`, message)
console.log(`documentId=${documentId} headA=${headA} headB=${headB}`)
