//! A document's change history, and reverting its content to an earlier version.

use automerge::{
    Automerge, ChangeHash, ObjId, transaction::CommitOptions, transaction::Transactable,
};
use serde::Serialize;

use super::ModelError;
use super::depth::{MAX_NESTING_DEPTH, nests_deeper_than};
use super::json::check_heads;
use super::reconcile::{Mode, reconcile_root};
use super::tree::Tree;

/// One change of a document's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The change's hash.
    pub hash: ChangeHash,
    /// Its author's actor id, as hex.
    pub actor: String,
    /// Its sequence number among that actor's changes (from 1).
    pub seq: u64,
    /// Its time in ms, as the author's device stated it (0 if none was given).
    pub time: i64,
    /// Its commit message, if any.
    pub message: Option<String>,
    /// The changes it depends on.
    pub deps: Vec<ChangeHash>,
}

/// Every change of the document, in the causal order automerge returns them (each change
/// after its dependencies).
pub fn history(doc: &Automerge) -> Vec<HistoryEntry> {
    doc.get_changes_meta(&[])
        .into_iter()
        .map(|meta| HistoryEntry {
            hash: meta.hash,
            actor: meta.actor.to_hex_string(),
            seq: meta.seq,
            time: meta.timestamp,
            message: meta.message.map(|m| m.into_owned()),
            deps: meta.deps,
        })
        .collect()
}

/// Writes one new change that makes the content of `doc` equal to its content at
/// `heads`, with minimal edits (see [`crate::model::reconcile_to_json`] for the walk;
/// types are kept exactly, counters are moved back by increments). History is kept:
/// this is an undo by a new change, and it merges with concurrent edits like any change.
///
/// Returns the new change's hash, or `None` if the content already matched (no change is
/// written).
///
/// # Errors
/// [`ModelError::UnknownHeads`] if any of `heads` is not in `doc`; nothing is written on
/// error.
pub fn revert_to(
    doc: &mut Automerge,
    heads: &[ChangeHash],
    opts: CommitOptions,
) -> Result<Option<ChangeHash>, ModelError> {
    let mut tx = doc.transaction();
    match revert_in(&mut tx, heads) {
        Ok(()) if tx.pending_ops() > 0 => Ok(tx.commit_with(opts).0),
        Ok(()) => {
            tx.rollback();
            Ok(None)
        }
        Err(e) => {
            tx.rollback();
            Err(e)
        }
    }
}

/// The body of [`revert_to`] inside the caller's transaction (to log patches or to batch
/// it with other edits). Roll the transaction back on error.
///
/// # Errors
/// [`ModelError::UnknownHeads`] if any of `heads` is not in the document.
pub fn revert_in(tx: &mut impl Transactable, heads: &[ChangeHash]) -> Result<(), ModelError> {
    check_heads(tx, heads)?;
    if nests_deeper_than(tx, &ObjId::Root, Some(heads), MAX_NESTING_DEPTH) {
        return Err(ModelError::TooDeep {
            max: MAX_NESTING_DEPTH,
        });
    }
    let old = tx.hydrate(ObjId::Root, Some(heads))?;
    reconcile_root(tx, &Tree::from_hydrate(&old), Mode::Exact)
}

#[cfg(test)]
mod tests;
