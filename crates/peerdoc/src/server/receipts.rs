//! Cloud receipts summarised: "is it safe to wipe this device?" (`docs/cloud.md`).
//!
//! Everything comes from the catalog (each document's metadata holds its receipts), so
//! the answer needs no network and no document loads.

use peerdoc_node::{DocumentSummary, ReceiptStatus};

use crate::api::Receipts;

/// Unconfirmed documents listed by id (highest priority first); the count is exact.
const LISTED: usize = 20;

/// The wire name of a document's receipt status.
pub(crate) fn status_name(status: ReceiptStatus) -> &'static str {
    match status {
        ReceiptStatus::Confirmed => "confirmed",
        ReceiptStatus::Reported => "reported",
        ReceiptStatus::Unconfirmed => "unconfirmed",
        ReceiptStatus::Deleted => "deleted",
    }
}

/// The `receipts` object of `/v1/status` (and the `/metrics` gauges) for these
/// documents.
pub(crate) fn summarise(docs: &[DocumentSummary]) -> Receipts {
    let live: Vec<&DocumentSummary> = docs.iter().filter(|d| !d.deleted).collect();
    let count = |status| live.iter().filter(|d| d.receipt == status).count();
    let confirmed = count(ReceiptStatus::Confirmed);
    let reported = count(ReceiptStatus::Reported);
    let unconfirmed = count(ReceiptStatus::Unconfirmed);
    let mut open: Vec<&&DocumentSummary> = live
        .iter()
        .filter(|d| d.receipt != ReceiptStatus::Confirmed)
        .collect();
    open.sort_by_key(|d| {
        (
            d.receipt == ReceiptStatus::Reported,
            -i64::from(d.priority),
            d.id,
        )
    });
    let not_confirmed_docs = open.iter().take(LISTED).map(|d| d.id.to_string()).collect();
    let oldest_receipt_ms = if unconfirmed == 0 {
        live.iter().filter_map(|d| d.receipt_ms).min()
    } else {
        None
    };
    let documents = live.len();
    let safe_to_wipe = confirmed == documents;
    let verdict = if documents == 0 {
        "safe to wipe: this device holds no documents".to_owned()
    } else if safe_to_wipe {
        format!(
            "safe to wipe: the cloud confirmed storing {}, exactly as held here",
            n_documents(documents)
        )
    } else if unconfirmed == 0 {
        format!(
            "probably safe to wipe: {} confirmed only by an automerge-repo sync server, \
                 which reports what it holds before writing it",
            n_documents(reported)
        )
    } else {
        format!(
            "NOT safe to wipe: {} of {documents} not confirmed by any cloud as held here",
            n_documents(unconfirmed)
        )
    };
    let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Receipts {
        safe_to_wipe,
        verdict,
        documents: wide(documents),
        confirmed: wide(confirmed),
        reported: wide(reported),
        unconfirmed: wide(unconfirmed),
        not_confirmed_docs,
        oldest_receipt_ms,
    }
}

fn n_documents(n: usize) -> String {
    if n == 1 {
        "1 document".to_owned()
    } else {
        format!("{n} documents")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerdoc_node::DocumentId;

    fn doc(n: u8, priority: i32, receipt: ReceiptStatus) -> DocumentSummary {
        DocumentSummary {
            id: DocumentId::from_bytes([n; 16]),
            title: None,
            priority,
            size: 0,
            created_ms: 0,
            last_change_ms: 0,
            deleted: receipt == ReceiptStatus::Deleted,
            heads: Vec::new(),
            receipt,
            receipt_ms: (receipt == ReceiptStatus::Confirmed || receipt == ReceiptStatus::Reported)
                .then_some(1_000 + u64::from(n)),
            conflicts_logged: 0,
            last_actor: None,
            open_conflicts: None,
        }
    }

    #[test]
    fn the_verdict_is_safe_only_when_every_live_document_is_confirmed() {
        use ReceiptStatus::*;
        let empty = summarise(&[]);
        assert!(empty.safe_to_wipe);

        let all = summarise(&[
            doc(1, 0, Confirmed),
            doc(2, 0, Confirmed),
            doc(3, 0, Deleted),
        ]);
        assert!(all.safe_to_wipe, "{}", all.verdict);
        assert_eq!((all.documents, all.confirmed), (2, 2));
        assert_eq!(all.oldest_receipt_ms, Some(1_001));

        let reported = summarise(&[doc(1, 0, Confirmed), doc(2, 0, Reported)]);
        assert!(!reported.safe_to_wipe);
        assert!(
            reported.verdict.starts_with("probably safe"),
            "{}",
            reported.verdict
        );

        let open = summarise(&[
            doc(1, 0, Confirmed),
            doc(2, 0, Reported),
            doc(3, 1, Unconfirmed),
            doc(4, 5, Unconfirmed),
        ]);
        assert!(!open.safe_to_wipe);
        assert!(open.verdict.starts_with("NOT safe"), "{}", open.verdict);
        assert_eq!(open.unconfirmed, 2);
        assert_eq!(open.oldest_receipt_ms, None);
        // Unconfirmed first, highest priority first, then reported-only.
        let ids: Vec<String> = [4u8, 3, 2]
            .iter()
            .map(|n| DocumentId::from_bytes([*n; 16]).to_string())
            .collect();
        assert_eq!(open.not_confirmed_docs, ids);
    }
}
