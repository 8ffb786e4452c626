//! Group commit: concurrent writers share one sled batch and one flush.
//!
//! A writer queues its batch and waits. Whenever no commit is in progress, one waiting
//! writer becomes the leader: it takes *every* queued batch, applies them as one atomic
//! sled batch (in queue order, so a later batch's op on a key wins, exactly as if they
//! had been applied one after another), flushes, and then publishes the outcome for each
//! ticket it took and wakes everyone. Writers that queued while that commit ran form the
//! next group, led by one of them.
//!
//! Why merge batches instead of only sharing the flush: sled 0.34's `apply_batch` takes a
//! process-wide write lock that excludes `flush` (which holds the read side for its whole
//! duration), so writers applying their own batches serialise against every flush and
//! share few of them. One apply plus one flush per group avoids that ping-pong.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::panic_message;

/// Counters that show how writes and flushes relate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Non-empty batches acknowledged by `write`.
    pub batches_written: u64,
    /// Successful group commits (one sled batch + one flush each).
    pub flushes_performed: u64,
}

#[derive(Debug)]
struct Queue<B> {
    waiting: Vec<(u64, B)>,
    next_ticket: u64,
    /// Outcomes for followers, removed by the follower that owns the ticket.
    outcomes: HashMap<u64, Result<(), String>>,
    leading: bool,
}

#[derive(Debug)]
pub(crate) struct GroupCommit<B> {
    queue: Mutex<Queue<B>>,
    committed: Condvar,
    batches: AtomicU64,
    flushes: AtomicU64,
}

impl<B> Default for GroupCommit<B> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                next_ticket: 0,
                outcomes: HashMap::new(),
                leading: false,
            }),
            committed: Condvar::new(),
            batches: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }
}

/// How a failure reaches the writers of a group.
pub(crate) trait GroupError: std::fmt::Display + Sized {
    /// The error a follower gets when the group it was committed with failed.
    fn from_group(detail: String) -> Self;
    /// The error when the commit closure panicked.
    fn from_panic(panic: String) -> Self;
}

impl<B> GroupCommit<B> {
    fn lock(&self) -> MutexGuard<'_, Queue<B>> {
        // Every mutation under this lock is a single push/take/insert, and the commit
        // closure runs outside it (panics caught), so a poisoned lock holds a usable state.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `batch` and returns once a group containing it has been applied and
    /// flushed by `apply_and_flush` (called by whichever writer leads that group), or
    /// with the group's error.
    pub(crate) fn commit<E: GroupError>(
        &self,
        batch: B,
        apply_and_flush: impl Fn(Vec<B>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut queue = self.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push((ticket, batch));
        loop {
            if let Some(outcome) = queue.outcomes.remove(&ticket) {
                return match outcome {
                    Ok(()) => {
                        self.batches.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(detail) => Err(E::from_group(detail)),
                };
            }
            if queue.leading {
                queue = self
                    .committed
                    .wait(queue)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead: our own batch is still queued (nobody else took the queue while we
            // held the lock), so it is part of this group.
            queue.leading = true;
            let group = std::mem::take(&mut queue.waiting);
            drop(queue);
            let tickets: Vec<u64> = group.iter().map(|(t, _)| *t).collect();
            let batches = group.into_iter().map(|(_, b)| b).collect();
            let result = catch_unwind(AssertUnwindSafe(|| apply_and_flush(batches)))
                .unwrap_or_else(|payload| Err(E::from_panic(panic_message(payload.as_ref()))));
            let shared: Result<(), String> = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            queue = self.lock();
            queue.leading = false;
            if result.is_ok() {
                self.flushes.fetch_add(1, Ordering::Relaxed);
            }
            for t in tickets.into_iter().filter(|t| *t != ticket) {
                queue.outcomes.insert(t, shared.clone());
            }
            self.committed.notify_all();
            drop(queue);
            if result.is_ok() {
                self.batches.fetch_add(1, Ordering::Relaxed);
            }
            return result;
        }
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            batches_written: self.batches.load(Ordering::Relaxed),
            flushes_performed: self.flushes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[derive(Debug, PartialEq)]
    struct Failed(String);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl GroupError for Failed {
        fn from_group(detail: String) -> Self {
            Failed(format!("group: {detail}"))
        }
        fn from_panic(panic: String) -> Self {
            Failed(format!("panic: {panic}"))
        }
    }

    #[test]
    fn a_lone_writer_leads_its_own_group() {
        let gc = GroupCommit::default();
        gc.commit(1u32, |b| {
            assert_eq!(b, vec![1]);
            Ok::<(), Failed>(())
        })
        .unwrap();
        assert_eq!(
            gc.stats(),
            CommitStats {
                batches_written: 1,
                flushes_performed: 1
            }
        );
    }

    #[test]
    fn failures_and_panics_are_reported_and_the_next_writer_proceeds() {
        let gc = GroupCommit::default();
        assert_eq!(
            gc.commit(1u32, |_| Err(Failed("disk".into()))),
            Err(Failed("disk".into()))
        );
        let panicked = gc.commit(2u32, |_| -> Result<(), Failed> { panic!("sled bug") });
        assert_eq!(panicked, Err(Failed("panic: sled bug".into())));
        gc.commit(3u32, |b| {
            assert_eq!(b, vec![3], "failed batches are not retried");
            Ok::<(), Failed>(())
        })
        .unwrap();
        assert_eq!(
            gc.stats(),
            CommitStats {
                batches_written: 1,
                flushes_performed: 1
            }
        );
    }

    #[test]
    fn writers_arriving_during_a_commit_form_the_next_group() {
        // The first group's commit blocks until seven more writers have queued, so the
        // second group holds all seven: two commits for eight batches, in queue order.
        let gc = Arc::new(GroupCommit::default());
        let in_commit = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let groups = Arc::new(Mutex::new(Vec::new()));
        let commit = {
            let (in_commit, release, groups) = (in_commit.clone(), release.clone(), groups.clone());
            move |batch: Vec<u32>| {
                in_commit.store(true, Ordering::SeqCst);
                while batch == vec![0] && !release.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                groups.lock().unwrap().push(batch);
                Ok::<(), Failed>(())
            }
        };
        let first = {
            let (gc, commit) = (gc.clone(), commit.clone());
            std::thread::spawn(move || gc.commit(0, commit))
        };
        while !in_commit.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let followers: Vec<_> = (1..8u32)
            .map(|n| {
                let (gc, commit) = (gc.clone(), commit.clone());
                std::thread::spawn(move || gc.commit(n, commit))
            })
            .collect();
        while gc.lock().waiting.len() < 7 {
            std::thread::yield_now();
        }
        release.store(true, Ordering::SeqCst);
        first.join().unwrap().unwrap();
        for f in followers {
            f.join().unwrap().unwrap();
        }
        let groups = groups.lock().unwrap();
        assert_eq!(groups.len(), 2, "{groups:?}");
        let mut second = groups[1].clone();
        second.sort();
        assert_eq!(second, (1..8).collect::<Vec<_>>());
        assert_eq!(
            gc.stats(),
            CommitStats {
                batches_written: 8,
                flushes_performed: 2
            }
        );
    }
}
