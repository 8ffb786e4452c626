//! Shared document metadata: a document's title and sync priority, seen by every device.
//!
//! The engine keeps title and priority in each device's catalog ([`DocumentMeta`]), which
//! never leaves the device. To share them, the daemon mirrors them into one automerge
//! document with a fixed id ([`doc_id`], the same on every device), synced like any
//! other. Its root holds flat keys, `title:<doc id>` (an immutable string, `""` for
//! cleared) and `priority:<doc id>` (an integer), so two devices that create it
//! independently merge key by key, and concurrent changes to one field resolve like any
//! automerge conflict: one value wins everywhere.
//!
//! - A local change (`PATCH /v1/docs/{id}/meta`, a create or import with a title or
//!   priority) sets the catalog and writes the keys.
//! - When the document changes from a peer, or a document arrives whose keys are already
//!   there, the values are copied into this device's catalog (never written back).
//!
//! Access follows the document's: a viewer's changes to it are not applied by anyone,
//! so a viewer cannot retitle documents. Priorities of documents not yet on this device
//! wait until they arrive.
//!
//! [`DocumentMeta`]: peerdoc_core::persist::DocumentMeta

use std::collections::BTreeMap;

use peerdoc_node::{DocumentId, EditOp, NodeError, NodeEvent, NodeHandle, Origin};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

/// The metadata document syncs early: titles should be there before the documents.
const META_DOC_PRIORITY: i32 = 900_000;
/// Title of the metadata document itself.
const META_DOC_TITLE: &str = "peerdoc: shared titles and priorities";
/// Most entries read from the document.
const MAX_ENTRIES: usize = 200_000;
/// Longest title kept, in characters (longer ones are cut).
const MAX_TITLE_CHARS: usize = 500;

/// The metadata document's id: the same on every device.
pub fn doc_id() -> DocumentId {
    // "peerdoc-metadata" in ASCII: 16 bytes, fixed forever.
    DocumentId::from_bytes(*b"peerdoc-metadata")
}

/// What the document says about one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shared {
    /// `Some("")` is a cleared title.
    title: Option<String>,
    priority: Option<i32>,
}

/// Mirrors titles and priorities between this device's catalog and the metadata
/// document. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedMeta {
    node: NodeHandle,
}

impl SharedMeta {
    /// Starts following the metadata document, and applies what it already holds.
    pub fn start(node: NodeHandle) -> Self {
        let shared = Self { node };
        let follower = shared.clone();
        let mut events = follower.node.subscribe();
        tokio::spawn(async move {
            follower.apply(None).await;
            loop {
                let only = match events.recv().await {
                    Ok(NodeEvent::DocumentChanged {
                        doc,
                        origin: Origin::Remote(_),
                        ..
                    }) if doc == doc_id() => None,
                    Ok(NodeEvent::DocumentCreated {
                        doc,
                        origin: Origin::Remote(_),
                    }) if doc == doc_id() => None,
                    Ok(NodeEvent::DocumentCreated {
                        doc,
                        origin: Origin::Remote(_),
                    }) => Some(doc),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                };
                follower.apply(only).await;
            }
        });
        shared
    }

    /// Records a local change of `doc`'s title (`Some(None)`: cleared) and/or priority
    /// for every device. The catalog is already set; a failure here is logged.
    pub async fn publish(
        &self,
        doc: DocumentId,
        title: Option<Option<&str>>,
        priority: Option<i32>,
    ) {
        if doc == doc_id() {
            return;
        }
        let mut ops = Vec::new();
        if let Some(title) = title {
            let title: String = title.unwrap_or("").chars().take(MAX_TITLE_CHARS).collect();
            ops.push(EditOp::Set {
                path: format!("/title:{doc}"),
                value: json!({ "$str": title }),
            });
        }
        if let Some(priority) = priority {
            ops.push(EditOp::Set {
                path: format!("/priority:{doc}"),
                value: json!(priority),
            });
        }
        if ops.is_empty() {
            return;
        }
        let result = match self.node.edit(doc_id(), ops.clone(), None).await {
            Err(NodeError::DocumentNotFound(_)) => {
                let mut initial = serde_json::Map::new();
                for op in ops {
                    if let EditOp::Set { path, value } = op {
                        initial.insert(path.trim_start_matches('/').to_owned(), value);
                    }
                }
                self.node
                    .create_at(
                        doc_id(),
                        Value::Object(initial),
                        META_DOC_PRIORITY,
                        Some(META_DOC_TITLE.to_owned()),
                    )
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        };
        if let Err(error) = result {
            tracing::warn!(%doc, %error, "could not share the document's title and priority");
        }
    }

    /// Copies the document's values into the catalog where they differ: for every
    /// document (`None`), or for one that just arrived.
    async fn apply(&self, only: Option<DocumentId>) {
        let shared = match self.node.read(doc_id()).await {
            Ok(Value::Object(map)) => parse(&map),
            _ => return,
        };
        if shared.is_empty() {
            return;
        }
        let Ok(docs) = self.node.list().await else {
            return;
        };
        for summary in docs {
            if summary.deleted || only.is_some_and(|d| d != summary.id) {
                continue;
            }
            if summary.id == doc_id() {
                // A copy that arrived from a peer: name it as its creator did.
                if summary.title.is_none() {
                    let _ = self
                        .node
                        .set_meta(
                            summary.id,
                            Some(META_DOC_PRIORITY),
                            Some(META_DOC_TITLE.to_owned()),
                        )
                        .await;
                }
                continue;
            }
            let Some(wanted) = shared.get(&summary.id.to_string()) else {
                continue;
            };
            let title = wanted
                .title
                .clone()
                .filter(|t| Some(t.as_str()) != summary.title.as_deref().or(Some("")));
            let priority = wanted.priority.filter(|p| *p != summary.priority);
            if title.is_none() && priority.is_none() {
                continue;
            }
            if let Err(error) = self.node.set_meta(summary.id, priority, title).await {
                tracing::debug!(doc = %summary.id, %error, "shared title or priority not applied");
            }
        }
    }
}

/// The document's entries by document id (unparsable entries skipped).
fn parse(map: &serde_json::Map<String, Value>) -> BTreeMap<String, Shared> {
    let mut out: BTreeMap<String, Shared> = BTreeMap::new();
    for (key, value) in map.iter().take(MAX_ENTRIES) {
        if let Some(doc) = key.strip_prefix("title:") {
            if let Some(title) = value.as_str() {
                out.entry(doc.to_owned()).or_default().title =
                    Some(title.chars().take(MAX_TITLE_CHARS).collect());
            }
        } else if let Some(doc) = key.strip_prefix("priority:")
            && let Some(priority) = value.as_i64().and_then(|p| i32::try_from(p).ok())
        {
            out.entry(doc.to_owned()).or_default().priority = Some(priority);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_per_field_and_skip_junk() {
        let map = json!({
            "title:A": "Seating plan",
            "priority:A": 5,
            "title:B": "",
            "priority:B": "high",
            "priority:C": 99_999_999_999_i64,
            "other": 1,
        });
        let parsed = parse(map.as_object().unwrap());
        assert_eq!(
            parsed["A"],
            Shared {
                title: Some("Seating plan".into()),
                priority: Some(5)
            }
        );
        assert_eq!(parsed["B"].title.as_deref(), Some(""));
        assert_eq!(parsed["B"].priority, None);
        assert!(!parsed.contains_key("C"));
        assert!(!parsed.contains_key("other"));
    }

    #[test]
    fn the_id_is_fixed() {
        // docs/api.md names it.
        assert_eq!(doc_id().to_string(), "2ZpaJgFemZpjw2yHtATyNm3wN4jx");
        assert_eq!(doc_id(), DocumentId::from_bytes(*b"peerdoc-metadata"));
    }
}
