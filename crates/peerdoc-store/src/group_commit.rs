//! Group commit: concurrent writers share one flush.
//!
//! Each writer applies its batch, then takes a sequence number. A sequence number is
//! handed out only after the batch is in sled's log, so a flush that *starts* after
//! `applied` reached `n` covers every batch numbered up to `n`. One writer at a time
//! becomes the leader: it notes `target = applied`, flushes without holding the lock,
//! then publishes `flushed = target` and wakes everyone. A writer returns once
//! `flushed` reaches its own number; writers that arrived during a flush are covered
//! by the next one, which one of them leads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Counters that show how writes and flushes relate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Non-empty batches acknowledged by `write`.
    pub batches_written: u64,
    /// Successful flushes performed for those batches.
    pub flushes_performed: u64,
}

#[derive(Debug, Default)]
struct Sequence {
    applied: u64,
    flushed: u64,
    flushing: bool,
}

#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    sequence: Mutex<Sequence>,
    flush_done: Condvar,
    batches: AtomicU64,
    flushes: AtomicU64,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, Sequence> {
        // The guarded state is three plain fields each updated by one assignment, so a
        // panic elsewhere cannot leave it inconsistent.
        self.sequence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that a batch is applied and returns its sequence number.
    pub(crate) fn applied(&self) -> u64 {
        let mut seq = self.lock();
        seq.applied += 1;
        seq.applied
    }

    /// Returns once a flush that started after batch `mine` was applied has succeeded,
    /// calling `flush` when this thread has to lead one.
    pub(crate) fn wait_durable<E>(
        &self,
        mine: u64,
        flush: impl Fn() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut seq = self.lock();
        loop {
            if seq.flushed >= mine {
                self.batches.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            if seq.flushing {
                seq = self.flush_done.wait(seq).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            seq.flushing = true;
            let target = seq.applied;
            drop(seq);
            let result = flush();
            seq = self.lock();
            seq.flushing = false;
            if result.is_ok() {
                seq.flushed = seq.flushed.max(target);
                self.flushes.fetch_add(1, Ordering::Relaxed);
            }
            self.flush_done.notify_all();
            // On failure the waiting writers retry as leaders themselves; this writer
            // reports the error since its batch is not known to be durable.
            result?;
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

    #[test]
    fn a_lone_writer_leads_its_own_flush() {
        let gc = GroupCommit::default();
        let mine = gc.applied();
        gc.wait_durable(mine, || Ok::<(), ()>(())).unwrap();
        assert_eq!(
            gc.stats(),
            CommitStats {
                batches_written: 1,
                flushes_performed: 1
            }
        );
    }

    #[test]
    fn a_failed_flush_is_reported_and_the_next_writer_retries() {
        let gc = GroupCommit::default();
        let mine = gc.applied();
        assert_eq!(gc.wait_durable(mine, || Err("disk")), Err("disk"));
        gc.wait_durable(mine, || Ok::<(), &str>(())).unwrap();
        assert_eq!(gc.stats().flushes_performed, 1);
    }

    #[test]
    fn writers_arriving_during_a_flush_share_the_next_one() {
        // The leader's flush blocks until every other writer has applied its batch, so
        // the second flush must cover all of them: exactly two flushes for 8 batches.
        let gc = Arc::new(GroupCommit::default());
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let in_flush = Arc::new(AtomicBool::new(false));
        let mine = gc.applied();
        let leader = {
            let (gc, release, in_flush) = (gc.clone(), release.clone(), in_flush.clone());
            std::thread::spawn(move || {
                gc.wait_durable(mine, || {
                    in_flush.store(true, Ordering::SeqCst);
                    let (lock, cv) = &*release;
                    let mut go = lock.lock().unwrap();
                    while !*go {
                        go = cv.wait(go).unwrap();
                    }
                    Ok::<(), ()>(())
                })
            })
        };
        while !in_flush.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let numbers: Vec<u64> = (0..7).map(|_| gc.applied()).collect();
        let followers: Vec<_> = numbers
            .into_iter()
            .map(|n| {
                let gc = gc.clone();
                std::thread::spawn(move || gc.wait_durable(n, || Ok::<(), ()>(())))
            })
            .collect();
        {
            let (lock, cv) = &*release;
            *lock.lock().unwrap() = true;
            cv.notify_all();
        }
        leader.join().unwrap().unwrap();
        for f in followers {
            f.join().unwrap().unwrap();
        }
        assert_eq!(
            gc.stats(),
            CommitStats {
                batches_written: 8,
                flushes_performed: 2
            }
        );
    }
}
