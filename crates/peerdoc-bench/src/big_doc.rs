//! "Big documents do not block": creating (and importing) a document holding a 2 MB
//! string as collaborative text, and what the edits of other documents on the same node
//! see meanwhile, against automerge building the same document alone and against the
//! same edits with nothing else going on.

use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT};
use peerdoc_node::{EditOp, NodeHandle};
use serde_json::json;

use crate::report::{Row, Section, Target};
use crate::sections::Plan;
use crate::stats::{Samples, ms};

const TEXT_BYTES: usize = 2 * 1024 * 1024;
const SMALL_DOCS: usize = 20;

/// One edit of a small document, timed.
async fn edit(
    handle: &NodeHandle,
    doc: peerdoc_core::DocumentId,
    i: usize,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    handle
        .edit(
            doc,
            vec![EditOp::Set {
                path: "/n".into(),
                value: json!(i),
            }],
            None,
        )
        .await?;
    Ok(start.elapsed())
}

pub(crate) fn section(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    let text: String = "The band arrives at 18:00; sound check at 18:30. "
        .chars()
        .cycle()
        .take(TEXT_BYTES)
        .collect();
    // Baseline: automerge alone, the same text in one transaction.
    let start = Instant::now();
    let mut alone = AutoCommit::new();
    let notes = alone.put_object(ROOT, "notes", ObjType::Text)?;
    alone.splice_text(&notes, 0, 0, &text)?;
    alone.commit();
    let alone_build = start.elapsed();
    let start = Instant::now();
    let saved = alone.save();
    let alone_save = start.elapsed();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let figures = runtime.block_on(async {
        let node = crate::nodes::start_temp(&plan.work_dir).await?;
        let handle = node.node.handle();
        let mut small = Vec::new();
        for n in 0..SMALL_DOCS {
            small.push(handle.create(json!({"n": n}), 0, None).await?);
        }
        let mut quiet = Samples::new();
        for i in 0..300 {
            quiet.push(edit(&handle, small[i % SMALL_DOCS], i).await?);
        }
        let mut during = Samples::new();
        let started = Instant::now();
        let creating = {
            let handle = handle.clone();
            let text = text.clone();
            tokio::spawn(async move { handle.create(json!({"notes": text}), 0, None).await })
        };
        let mut i = 0;
        while !creating.is_finished() {
            during.push(edit(&handle, small[i % SMALL_DOCS], i).await?);
            i += 1;
        }
        let created = started.elapsed();
        creating.await??;
        let started = Instant::now();
        handle.import(saved.clone(), 0, None).await?;
        let imported = started.elapsed();
        node.node.shutdown().await;
        anyhow::Ok((quiet, during, created, imported))
    })?;
    let (quiet, during, created, imported) = figures;
    let subject = "node, a document with a 2 MB string as text";
    s.row(
        Row::new(
            subject,
            "create, until durable",
            "ms",
            Some(ms(created)),
            "automerge alone: build (no save)",
            Some(ms(alone_build)),
        )
        .target("≤ 1 s", Target::AtMost(1_000.0)),
    );
    s.row(
        Row::new(
            subject,
            "import of its save() bytes, until durable",
            "ms",
            Some(ms(imported)),
            "automerge alone: save()",
            Some(ms(alone_save)),
        )
        .target("≤ 1 s", Target::AtMost(1_000.0)),
    );
    let p99 = |s: &Samples| s.percentile_ms(99.0);
    s.row(
        Row::new(
            format!(
                "edits of {SMALL_DOCS} other documents ({} during the create)",
                during.len()
            ),
            "edit p99 while the big document is created",
            "ms",
            p99(&during),
            "the same edits with nothing else going on (p99)",
            p99(&quiet),
        )
        .target("≤ 1.5x", Target::RatioAtMost(1.5)),
    );
    s.row(Row::new(
        format!("edits of {SMALL_DOCS} other documents"),
        "edit p50 while the big document is created",
        "ms",
        during.percentile_ms(50.0),
        "the same edits with nothing else going on (p50)",
        quiet.percentile_ms(50.0),
    ));
    s.note(format!("One node on loopback (default NodeConfig, mDNS off). The document is `{{\"notes\": <{TEXT_BYTES} characters>}}`; strings become automerge text, one op per character. Edits are one at a time, each to the next of {SMALL_DOCS} small documents, each returning once durable; 300 before the create (the baseline), then as many as fit while the create runs. The import is the automerge-alone document's save() bytes ({} B).", saved.len()));
    Ok(())
}
