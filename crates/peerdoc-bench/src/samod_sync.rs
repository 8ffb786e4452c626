//! The samod baseline for item 2: two samod repos (tokio runtime, in-memory storage),
//! joined by samod's own in-memory `ChannelDialer`; cold sync of N small documents from
//! one to the other.
//!
//! samod's hub does work quadratic in the number of documents and searches while holding
//! its lock, so a timeout inside the process does not stop it promptly. It therefore
//! runs in a child process that prints its progress as JSON lines; the parent stops
//! reading at the budget and kills the child.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use samod::transport::channel::ChannelDialer;
use samod::{BackoffConfig, Repo};
use serde::{Deserialize, Serialize};

/// One progress line of the child.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Documents created on the sending repo so far.
    pub(crate) created: usize,
    /// Time spent creating them, ms.
    pub(crate) setup_ms: f64,
    /// Documents the receiving repo has found so far.
    pub(crate) received: usize,
    /// Time since the dial, ms (0 before it).
    pub(crate) sync_ms: f64,
    /// Whether the child finished (every document found).
    pub(crate) done: bool,
}

/// What samod did within the budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SamodColdSync {
    /// The last progress line.
    pub(crate) progress: Progress,
    /// Whether the budget ran out first.
    pub(crate) cut: bool,
}

/// In the child: creates `n` documents on one repo, connects an empty one and waits
/// until it found all of them, printing progress every 200 ms.
pub(crate) async fn child(n: usize) -> anyhow::Result<()> {
    let created = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let setup_ms = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let sync_start = Arc::new(std::sync::OnceLock::<Instant>::new());
    {
        let (created, received, setup_ms, sync_start) = (
            created.clone(),
            received.clone(),
            setup_ms.clone(),
            sync_start.clone(),
        );
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let progress = Progress {
                    created: created.load(Ordering::Relaxed),
                    setup_ms: match setup_ms.load(Ordering::Relaxed) {
                        0 => crate::stats::ms(start.elapsed()),
                        done => done as f64,
                    },
                    received: received.load(Ordering::Relaxed),
                    sync_ms: sync_start
                        .get()
                        .map_or(0.0, |s| crate::stats::ms(s.elapsed())),
                    done: false,
                };
                if let Ok(line) = serde_json::to_string(&progress) {
                    println!("{line}");
                }
            }
        });
    }
    let alice = Repo::build_tokio().load().await;
    let bob = Repo::build_tokio().load().await;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let handle = alice
            .create(crate::plain::small_doc(i))
            .await
            .map_err(|_| anyhow::anyhow!("samod repo stopped while creating"))?;
        ids.push(handle.document_id().clone());
        created.fetch_add(1, Ordering::Relaxed);
    }
    let setup = crate::stats::ms(start.elapsed());
    setup_ms.store(setup.max(1.0) as usize, Ordering::Relaxed);

    let begun = Instant::now();
    let _ = sync_start.set(begun);
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
    anyhow::ensure!(
        dialer.established().await.is_ok(),
        "samod connection not established"
    );
    let mut finds: FuturesUnordered<_> = ids.into_iter().map(|id| bob.find(id)).collect();
    while let Some(found) = finds.next().await {
        if let Ok(Some(_)) = found {
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
    let progress = Progress {
        created: created.load(Ordering::Relaxed),
        setup_ms: setup,
        received: received.load(Ordering::Relaxed),
        sync_ms: crate::stats::ms(begun.elapsed()),
        done: true,
    };
    println!("{}", serde_json::to_string(&progress)?);
    Ok(())
}

/// Runs the child for `n` documents; stops it after `budget` (setup included).
pub(crate) fn cold_sync(n: usize, budget: Duration) -> anyhow::Result<SamodColdSync> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["child", "samod", "--docs", &n.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout from the samod child"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(progress) = serde_json::from_str::<Progress>(&line)
                && tx.send(progress).is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + budget;
    let mut last = Progress::default();
    let mut cut = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(progress) => {
                last = progress;
                if progress.done {
                    cut = false;
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
            // The child ended without a final line: it failed.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                anyhow::bail!("samod child ended early ({status}) after {last:?}");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(SamodColdSync {
        progress: last,
        cut,
    })
}
