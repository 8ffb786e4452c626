//! The samod baseline for item 2: two samod repos (tokio runtime, in-memory storage) in
//! this process, joined by samod's own in-memory `ChannelDialer`; cold sync of N small
//! documents from one to the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use samod::transport::channel::ChannelDialer;
use samod::{BackoffConfig, Repo};

/// What samod did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SamodColdSync {
    /// Documents the receiving repo held when the clock stopped.
    pub(crate) received: usize,
    /// From dialling to the last document found (or to the budget running out).
    pub(crate) time: Duration,
    /// Time to create the documents on the sending repo (not part of `time`).
    pub(crate) setup: Duration,
}

/// Creates `n` small documents on one repo, connects an empty repo and waits, within
/// `budget`, until the empty one has found every document.
pub(crate) async fn cold_sync(n: usize, budget: Duration) -> anyhow::Result<SamodColdSync> {
    let alice = Repo::build_tokio().load().await;
    let bob = Repo::build_tokio().load().await;
    let setup_start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let handle = alice
            .create(crate::plain::small_doc(i))
            .await
            .map_err(|_| anyhow::anyhow!("samod repo stopped while creating"))?;
        ids.push(handle.document_id().clone());
    }
    let setup = setup_start.elapsed();

    let start = Instant::now();
    let url = samod::Url::parse("channel://peerdoc-bench")?;
    let acceptor = bob
        .make_acceptor(url)
        .map_err(|_| anyhow::anyhow!("samod repo stopped"))?;
    let dialer = alice
        .dial(
            BackoffConfig::default(),
            Arc::new(ChannelDialer::new(acceptor)),
        )
        .map_err(|_| anyhow::anyhow!("samod repo stopped"))?;
    let deadline = tokio::time::Instant::now() + budget;
    let established = tokio::time::timeout_at(deadline, dialer.established()).await;
    anyhow::ensure!(
        matches!(established, Ok(Ok(_))),
        "samod connection not established"
    );
    let mut finds: FuturesUnordered<_> = ids.into_iter().map(|id| bob.find(id)).collect();
    let mut received = 0;
    loop {
        match tokio::time::timeout_at(deadline, finds.next()).await {
            Ok(Some(Ok(Some(_)))) => received += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let time = start.elapsed();
    drop(finds);
    bob.stop().await;
    alice.stop().await;
    Ok(SamodColdSync {
        received,
        time,
        setup,
    })
}
