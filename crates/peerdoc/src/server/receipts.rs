//! Cloud receipts summarised: "is it safe to wipe this device?" (`docs/cloud.md`).
//!
//! Everything comes from the catalog (each document's metadata holds its receipts), so
//! the answer needs no network and no document loads.

use peerdoc_node::{CloudDurability, DocumentSummary, ReceiptStatus};

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
    let confirmed_as = |durability| {
        live.iter()
            .filter(|d| {
                d.receipt == ReceiptStatus::Confirmed && d.receipt_durability == Some(durability)
            })
            .count()
    };
    let power_safe = confirmed_as(CloudDurability::Power);
    let process_safe = confirmed_as(CloudDurability::Process);
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
        let durability = if power_safe == documents {
            ", to survive a power cut".to_owned()
        } else if process_safe > 0 {
            format!(
                " ({} only against a crash of the cloud's process, not a power cut of its \
                 machine)",
                n_documents(process_safe)
            )
        } else {
            String::new()
        };
        format!(
            "safe to wipe: the cloud confirmed storing {}, exactly as held here{durability}",
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
        confirmed_power_safe: wide(power_safe),
        confirmed_process_safe: wide(process_safe),
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
            receipt_durability: None,
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

    #[test]
    fn the_verdict_says_what_the_cloud_declared_its_writes_survive() {
        use ReceiptStatus::*;
        let with = |n, durability| DocumentSummary {
            receipt_durability: durability,
            ..doc(n, 0, Confirmed)
        };
        let power = summarise(&[
            with(1, Some(CloudDurability::Power)),
            with(2, Some(CloudDurability::Power)),
        ]);
        assert!(power.safe_to_wipe);
        assert_eq!(power.confirmed_power_safe, 2);
        assert!(
            power.verdict.ends_with("to survive a power cut"),
            "{}",
            power.verdict
        );

        let mixed = summarise(&[
            with(1, Some(CloudDurability::Power)),
            with(2, Some(CloudDurability::Process)),
        ]);
        assert!(mixed.safe_to_wipe);
        assert_eq!(
            (mixed.confirmed_power_safe, mixed.confirmed_process_safe),
            (1, 1)
        );
        assert!(
            mixed.verdict.contains("1 document only against a crash"),
            "{}",
            mixed.verdict
        );

        let unsaid = summarise(&[with(1, None)]);
        assert!(!unsaid.verdict.contains("power"), "{}", unsaid.verdict);
    }
}
