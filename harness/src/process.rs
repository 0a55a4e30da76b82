//! Running a program the harness may have just written (a downloaded kind, minikube or
//! istioctl, a stand-in built by a test).
//!
//! On Linux, `exec` of a file fails with `ETXTBSY` ("Text file busy") while any process holds
//! it open for writing. Closing our own descriptor is not enough in a multi-threaded process:
//! another thread's `fork` between our `open` and `close` gives the child a copy of the
//! descriptor, which it holds until its own `exec` closes it (`O_CLOEXEC`). The window is
//! microseconds long, but CI met it (`download::kind_binary_is_verified_executable_and_cached`,
//! tests running on parallel threads). See rust-lang/rust#114554 and Go's `os/exec`, which
//! retries the same way. The copy always goes away on its own, so a short retry is the fix.

use std::io;
use std::process::Output;
use std::time::Duration;

/// How many times a busy executable is tried before its error is returned.
const BUSY_ATTEMPTS: u32 = 20;

/// The wait after the `n`th busy attempt: 5 ms, 10 ms, ... (about a second in all).
fn busy_pause(n: u32) -> Duration {
    Duration::from_millis(5 * u64::from(n))
}

fn is_busy(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ExecutableFileBusy
}

/// `cmd.output()`, tried again while the executable is busy (see the module's docs).
pub async fn output(cmd: &mut tokio::process::Command) -> io::Result<Output> {
    let mut n = 1;
    loop {
        match cmd.output().await {
            Err(e) if is_busy(&e) && n < BUSY_ATTEMPTS => {
                tokio::time::sleep(busy_pause(n)).await;
                n += 1;
            }
            res => return res,
        }
    }
}

/// The blocking form of [`output`], for teardown paths that run outside the async runtime.
pub fn output_blocking(cmd: &mut std::process::Command) -> io::Result<Output> {
    let mut n = 1;
    loop {
        match cmd.output() {
            Err(e) if is_busy(&e) && n < BUSY_ATTEMPTS => {
                std::thread::sleep(busy_pause(n));
                n += 1;
            }
            res => return res,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    /// A file held open for writing is busy; once closed, the retry runs it.
    #[tokio::test]
    async fn a_busy_executable_runs_once_the_writer_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"#!/bin/sh\necho ran\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();

        let busy = std::process::Command::new(&path).output().unwrap_err();
        assert!(is_busy(&busy), "{busy}");

        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(f);
        });
        let out = output(&mut tokio::process::Command::new(&path))
            .await
            .unwrap();
        closer.join().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    }

    /// Other errors are returned as they are.
    #[test]
    fn other_errors_pass_through() {
        let e = output_blocking(&mut std::process::Command::new("/nonexistent/tool")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!is_busy(&e));
    }
}
