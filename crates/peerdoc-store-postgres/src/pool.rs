//! A bounded pool of [`Session`]s with reconnection backoff.
//!
//! At most `pool_size` sessions exist (idle or lent). A caller takes an idle one, or
//! opens one while there is room, or waits (bounded) for one to come back. A failed
//! connection attempt starts a backoff: until it ends, callers that would connect fail
//! at once with the last error instead of each waiting out a connect timeout against a
//! server that is down; the first call after it tries again, and a success ends it.
//! A session whose connection broke is dropped with every idle one (after a server
//! restart they are all dead), so the next call connects afresh.
//!
//! Hand-written rather than r2d2: r2d2 reports a failed connect only as "timed out
//! waiting for connection" after its whole wait, with the cause squashed into a string,
//! retries in a background thread pool of its own, and checks each checkout with a round
//! trip. Here the caller gets the server's own reason (unreachable, login refused,
//! read-only, …) at once, and no thread runs between calls.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::config::PgConfig;
use crate::error::PgStoreError;
use crate::session::Session;

pub(crate) struct Pool {
    config: PgConfig,
    target: String,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    /// Sessions that exist or are being opened: idle + lent + connecting.
    open: usize,
    backoff: Backoff,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<PgStoreError>,
}

impl Backoff {
    fn failed(&mut self, config: &PgConfig, error: PgStoreError, now: Instant) {
        let doubling = 1u32 << self.failures.min(16);
        let wait = config
            .backoff_initial
            .saturating_mul(doubling)
            .min(config.backoff_max);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + wait);
        self.last_error = Some(error);
    }

    /// The last error, while the backoff lasts.
    fn refusal(&self, now: Instant) -> Option<PgStoreError> {
        let retry_at = self.retry_at?;
        if now >= retry_at {
            return None;
        }
        let wait = retry_at - now;
        self.last_error.clone().map(|error| match error {
            PgStoreError::Unreachable { target, detail } => PgStoreError::Unreachable {
                target,
                detail: format!(
                    "{detail} (next connection attempt in {} ms)",
                    wait.as_millis()
                ),
            },
            other => other,
        })
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("size", &self.config.pool_size)
            .field("open", &state.open)
            .field("idle", &state.idle.len())
            .field("failures", &state.backoff.failures)
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(config: PgConfig) -> Self {
        let target = config.target();
        Self {
            config,
            target,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                backoff: Backoff::default(),
            }),
            returned: Condvar::new(),
        }
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Every critical section is a few field updates that cannot panic halfway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle session, a new one, or one given back within the wait.
    pub(crate) fn checkout(&self) -> Result<Lease<'_>, PgStoreError> {
        let wait = self.config.operation_timeout();
        let deadline = Instant::now() + wait;
        let mut state = self.lock();
        loop {
            if let Some(mut session) = state.idle.pop() {
                session.reused = true;
                return Ok(Lease {
                    pool: self,
                    session: Some(session),
                });
            }
            if state.open < self.config.pool_size {
                let now = Instant::now();
                if let Some(refusal) = state.backoff.refusal(now) {
                    return Err(refusal);
                }
                state.open += 1;
                drop(state);
                let connected = Session::connect(&self.config, &self.target);
                let mut state = self.lock();
                return match connected {
                    Ok(session) => {
                        if state.backoff.failures > 0 {
                            tracing::info!(target = %self.target, "PostgreSQL reachable again");
                        }
                        state.backoff = Backoff::default();
                        Ok(Lease {
                            pool: self,
                            session: Some(session),
                        })
                    }
                    Err(error) => {
                        state.open -= 1;
                        tracing::warn!(target = %self.target, %error, "PostgreSQL connection failed");
                        state
                            .backoff
                            .failed(&self.config, error.clone(), Instant::now());
                        // A waiter may open the slot this attempt gave up (after the backoff).
                        self.returned.notify_one();
                        Err(error)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PgStoreError::PoolExhausted {
                    size: self.config.pool_size,
                    waited: wait,
                });
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn give_back(&self, session: Session) {
        self.lock().idle.push(session);
        self.returned.notify_one();
    }

    fn discard(&self, session: Session) {
        let stale = {
            let mut state = self.lock();
            let stale = std::mem::take(&mut state.idle);
            state.open -= 1 + stale.len();
            stale
        };
        self.returned.notify_all();
        // Closing sockets outside the lock.
        drop(session);
        drop(stale);
    }
}

/// A lent session: given back on drop, or discarded with [`Lease::discard`].
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    session: Option<Session>,
}

impl Lease<'_> {
    pub(crate) fn session(&mut self) -> &mut Session {
        match &mut self.session {
            Some(session) => session,
            // `session` is only taken by `discard`, which consumes the lease.
            None => unreachable!("a lease holds its session until it is dropped"),
        }
    }

    /// Drops this broken session and every idle one.
    pub(crate) fn discard(mut self) {
        if let Some(session) = self.session.take() {
            self.pool.discard(session);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.give_back(session);
        }
    }
}

impl std::fmt::Debug for Lease<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("session", &self.session)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_says_when_it_retries() {
        let config = PgConfig::from_connection_string("host=/nonexistent")
            .unwrap()
            .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(350));
        let error = PgStoreError::Unreachable {
            target: "t".into(),
            detail: "refused".into(),
        };
        let start = Instant::now();
        let mut backoff = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..4 {
            backoff.failed(&config, error.clone(), start);
            waits.push(backoff.retry_at.unwrap() - start);
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 350, 350]);
        let refusal = backoff.refusal(start).unwrap().to_string();
        assert!(
            refusal.starts_with("database unreachable at t: refused"),
            "{refusal}"
        );
        assert!(
            refusal.contains("next connection attempt in 350 ms"),
            "{refusal}"
        );
        assert!(
            backoff
                .refusal(start + Duration::from_millis(350))
                .is_none()
        );
    }
}
