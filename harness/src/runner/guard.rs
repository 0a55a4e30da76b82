//! Running one piece of a scenario under a deadline, catching its panic and stopping it on
//! Ctrl-C: [`guarded`] and its [`Outcome`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a guarded piece of work ended.
#[derive(Debug)]
pub enum Outcome<T> {
    /// It finished with this value.
    Done(T),
    /// The deadline passed first.
    TimedOut,
    /// It panicked, with this message.
    Panicked(String),
    /// Ctrl-C (SIGINT) or SIGTERM came first.
    Interrupted,
}

/// Runs `fut` until it finishes, `deadline` passes, it panics, or `interrupt` fires.
pub async fn guarded<T>(
    fut: impl Future<Output = T>,
    deadline: Instant,
    interrupt: &mut Interrupt,
) -> Outcome<T> {
    let fut = AssertUnwindSafe(tokio::time::timeout_at(deadline.into(), fut)).catch_unwind();
    tokio::select! {
        r = fut => match r {
            Err(panic) => Outcome::Panicked(panic_message(panic)),
            Ok(Err(_)) => Outcome::TimedOut,
            Ok(Ok(v)) => Outcome::Done(v),
        },
        _ = interrupt.fired() => Outcome::Interrupted,
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, seen by every guarded piece of a run; once fired it stays
/// fired. The signal listener ends with the run.
pub struct Interrupt {
    rx: watch::Receiver<bool>,
    listener: Option<JoinHandle<()>>,
}

impl Interrupt {
    /// Listens for SIGINT and SIGTERM until dropped.
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        let listener = tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            let _ = tx.send(true);
        });
        Interrupt {
            rx,
            listener: Some(listener),
        }
    }

    /// Never fires (tests drive interruption themselves).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive for the whole run, so `fired` stays pending.
        let listener = tokio::spawn(async move {
            std::future::pending::<()>().await;
            drop(tx);
        });
        Interrupt {
            rx,
            listener: Some(listener),
        }
    }

    /// Resolves once a signal came (at once if one already did).
    pub async fn fired(&mut self) {
        if self.rx.wait_for(|fired| *fired).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
    }
}

/// The message of a caught panic.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic with no message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn outcomes() {
        let mut i = Interrupt::never();
        let soon = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            guarded(async { 7 }, soon, &mut i).await,
            Outcome::Done(7)
        ));
        let past = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            guarded(std::future::pending::<()>(), past, &mut i).await,
            Outcome::TimedOut
        ));
        let boom = guarded(async { panic!("boom") }, soon, &mut i).await;
        assert!(
            matches!(boom, Outcome::Panicked(ref m) if m == "boom"),
            "{boom:?}"
        );
    }
}
