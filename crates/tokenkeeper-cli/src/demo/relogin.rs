//! The login screen: where a logged-out app sends its user, once per logout.

use super::contender::Contender;
use super::timeline::recorder::{MarkKind, Marks};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Signs the app in again after a logout, the way an app does: every virtual user that finds
/// itself logged out waits at the login screen; the first one signs in again after `delay`
/// (the user typing the password), and the others go on with the new login.
///
/// Logouts are told apart by an *epoch*: a user that noticed the logout during epoch `e` skips
/// the re-login if someone already signed in again since.
#[derive(Debug)]
pub struct ReloginGate {
    epoch: AtomicU64,
    screen: tokio::sync::Mutex<()>,
    delay: Duration,
    forced: AtomicU64,
    /// When each sign-in began, in seconds since the run's origin.
    sign_ins: Mutex<Vec<f64>>,
    marks: Arc<Marks>,
}

impl ReloginGate {
    /// A gate whose re-logins take `delay`.
    pub fn new(delay: Duration, marks: Arc<Marks>) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            screen: tokio::sync::Mutex::new(()),
            delay,
            forced: AtomicU64::new(0),
            sign_ins: Mutex::new(Vec::new()),
            marks,
        }
    }

    /// The current login epoch; read it before sending a request.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The first sign-in of the run.
    pub async fn sign_in_first(&self, contender: &Contender) -> anyhow::Result<()> {
        self.record_sign_in();
        contender.sign_in().await
    }

    /// A request sent during `seen_epoch` found the session over: go to the login screen.
    pub async fn relogin(&self, seen_epoch: u64, contender: &Contender) -> anyhow::Result<()> {
        let _screen = self.screen.lock().await;
        if self.epoch() != seen_epoch {
            return Ok(());
        }
        tokio::time::sleep(self.delay).await;
        self.record_sign_in();
        contender.sign_in().await?;
        self.forced.fetch_add(1, Ordering::Relaxed);
        self.marks.mark(MarkKind::Relogin);
        self.epoch.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Re-logins forced so far.
    pub fn forced(&self) -> u64 {
        self.forced.load(Ordering::Relaxed)
    }

    /// When each sign-in began (seconds since the origin), the first one included.
    pub fn sign_ins(&self) -> Vec<f64> {
        self.sign_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record_sign_in(&self) {
        let at = self.marks.now();
        self.sign_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(at);
    }
}
