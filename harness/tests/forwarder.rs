//! The TCP forwarder against real sockets on 127.0.0.1: data integrity under concurrency,
//! half-close, upstream failures, graceful stop, bind addresses and byte counts.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::forwarder::{CopyMode, Forwarder, ForwarderConfig, ForwarderStats};
use rstest::rstest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Upper bound for anything a test waits on: a hang fails the test instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `fut` with the [`LIMIT`], failing the test with `what` when it is exceeded.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A server task that stops (and closes its listener) when dropped.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves every connection with `serve` on `listener`.
fn serve_with<F, Fut>(listener: TcpListener, serve: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (sock, _) = listener.accept().await.expect("test server accept");
            conns.spawn(serve(sock));
        }
    });
    Server { addr, task }
}

/// An echo server: copies what it reads back, and shuts down its write half at end-of-file.
async fn echo_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_with(listener, |mut sock| async move {
        let (mut r, mut w) = sock.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
}

/// A forwarder on 127.0.0.1 (a free port) to `target`.
async fn forwarder(target: SocketAddr, mode: CopyMode) -> Forwarder {
    let cfg = ForwarderConfig::new(loopback0(), target.to_string());
    Forwarder::start_with_mode(cfg, mode)
        .await
        .expect("start forwarder")
}

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `len` bytes of a pattern that differs per `seed` and has no short period.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `data` and shuts down the write half while reading everything back until end-of-file.
async fn round_trip(sock: TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
    let (mut r, mut w) = sock.into_split();
    let reader = async move {
        let mut got = Vec::with_capacity(data.len());
        r.read_to_end(&mut got).await?;
        Ok::<_, io::Error>(got)
    };
    let writer = async move {
        w.write_all(data).await?;
        w.shutdown().await
    };
    let (got, ()) = tokio::try_join!(reader, writer)?;
    Ok(got)
}

/// Reads until the peer closes; a reset counts as closed too. Returns what was read.
async fn read_until_closed(sock: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match sock.read_to_end(&mut got).await {
        Ok(_) => {}
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "unexpected error while waiting for close: {e}"
        ),
    }
    got
}

/// Waits (bounded) until connecting to `addr` is refused.
async fn until_refused(addr: SocketAddr) {
    within("the listener to close", async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
                // Several workers' listeners close one after the other: a connection queued at
                // one that is closing is reset.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    tokio::task::yield_now().await
                }
                Err(e) => panic!("unexpected connect error: {e}"),
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
}

#[rstest]
#[case::splice(CopyMode::Splice)]
#[case::buffered(CopyMode::Buffered)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections_echo_one_mib_intact(#[case] mode: CopyMode) {
    const CONNS: usize = 200;
    const LEN: usize = 1 << 20;
    let echo = echo_server().await;
    let fwd = forwarder(echo.addr, mode).await;
    let addr = fwd.local_addr();
    let base = Arc::new(pattern(42, 2 * LEN));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CONNS {
        let base = Arc::clone(&base);
        clients.spawn(async move {
            // Each connection sends a different slice of the pattern.
            let data = &base[i * 997..i * 997 + LEN];
            let sock = TcpStream::connect(addr).await.expect("connect");
            let got = round_trip(sock, data).await.expect("round trip");
            assert_eq!(got.len(), LEN, "connection {i}: length");
            assert!(got == data, "connection {i}: bytes differ");
        });
    }
    within("200 echo round trips", async {
        while let Some(r) = clients.join_next().await {
            r.expect("client task");
        }
    })
    .await;
    let stats = within("stop", fwd.stop(Duration::from_secs(10))).await;
    let total = (CONNS * LEN) as u64;
    assert_eq!(
        stats,
        ForwarderStats {
            accepted: CONNS as u64,
            failed: 0,
            active: 0,
            bytes_to_upstream: total,
            bytes_to_client: total,
        }
    );
}

#[rstest]
#[case::splice(CopyMode::Splice)]
#[case::buffered(CopyMode::Buffered)]
#[tokio::test]
async fn client_half_close_reaches_upstream_which_still_answers(#[case] mode: CopyMode) {
    // The upstream reads until end-of-file, then answers with what it counted.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = serve_with(listener, |mut sock| async move {
        let mut got = Vec::new();
        sock.read_to_end(&mut got).await.unwrap();
        let answer = format!("got {} bytes: {}", got.len(), String::from_utf8_lossy(&got));
        sock.write_all(answer.as_bytes()).await.unwrap();
    });
    let fwd = forwarder(upstream.addr, mode).await;
    let mut sock = TcpStream::connect(fwd.local_addr()).await.unwrap();
    sock.write_all(b"hello").await.unwrap();
    sock.shutdown().await.unwrap();
    let mut answer = String::new();
    within(
        "the answer after half-close",
        sock.read_to_string(&mut answer),
    )
    .await
    .unwrap();
    assert_eq!(answer, "got 5 bytes: hello");
}

#[rstest]
#[case::splice(CopyMode::Splice)]
#[case::buffered(CopyMode::Buffered)]
#[tokio::test]
async fn upstream_half_close_reaches_client_which_still_answers(#[case] mode: CopyMode) {
    // The upstream greets and shuts down its write half at once, then reads the client's reply.
    let (replies, mut reply) = tokio::sync::mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = serve_with(listener, move |mut sock| {
        let replies = replies.clone();
        async move {
            sock.write_all(b"greeting").await.unwrap();
            sock.shutdown().await.unwrap();
            let mut got = Vec::new();
            sock.read_to_end(&mut got).await.unwrap();
            replies.send(got).unwrap();
        }
    });
    let fwd = forwarder(upstream.addr, mode).await;
    let mut sock = TcpStream::connect(fwd.local_addr()).await.unwrap();
    let mut greeting = Vec::new();
    within(
        "the greeting and end-of-file",
        sock.read_to_end(&mut greeting),
    )
    .await
    .unwrap();
    assert_eq!(greeting, b"greeting");
    sock.write_all(b"reply after eof").await.unwrap();
    sock.shutdown().await.unwrap();
    let got = within("the reply upstream", reply.recv()).await.unwrap();
    assert_eq!(got, b"reply after eof");
}

#[rstest]
#[case::splice(CopyMode::Splice)]
#[case::buffered(CopyMode::Buffered)]
#[tokio::test]
async fn upstream_down_is_counted_then_up_again_works(#[case] mode: CopyMode) {
    let target = free_port();
    let fwd = forwarder(target, mode).await;
    // Down: each client connection is closed, counted, and the forwarder goes on serving.
    for attempt in 1..=2u64 {
        let mut sock = TcpStream::connect(fwd.local_addr()).await.unwrap();
        let got = within("the client to be closed", read_until_closed(&mut sock)).await;
        assert!(got.is_empty());
        let stats = fwd.stats();
        assert_eq!((stats.accepted, stats.failed), (attempt, attempt));
    }
    // Up: an echo server appears on the target port.
    let listener = TcpListener::bind(target)
        .await
        .expect("rebind the target port");
    let _echo = serve_with(listener, |mut sock| async move {
        let (mut r, mut w) = sock.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    });
    let sock = TcpStream::connect(fwd.local_addr()).await.unwrap();
    let got = within("echo once the upstream is up", round_trip(sock, b"back up"))
        .await
        .unwrap();
    assert_eq!(got, b"back up");
    let stats = within("stop", fwd.stop(Duration::from_secs(5))).await;
    assert_eq!((stats.accepted, stats.failed, stats.active), (3, 2, 0));
}

#[tokio::test]
async fn upstream_connect_timeout_is_counted_and_logged() {
    // A listener that never accepts, with no room in its accept queue: once one connection
    // waits there, the kernel drops further SYNs and connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(loopback0()).unwrap();
    let full = socket.listen(0).unwrap();
    let target = full.local_addr().unwrap();
    let _queued = TcpStream::connect(target).await.unwrap();

    let log = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    // The forwarder's thread logs to the subscriber that is the default where it starts.
    let _default = tracing::subscriber::set_default(subscriber);
    let mut cfg = ForwarderConfig::new(loopback0(), target.to_string());
    cfg.connect_timeout = Duration::from_millis(300);
    let fwd = Forwarder::start(cfg).await.unwrap();
    let started = Instant::now();
    let mut sock = TcpStream::connect(fwd.local_addr()).await.unwrap();
    within("the client to be closed", read_until_closed(&mut sock)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let stats = fwd.stop(Duration::from_secs(1)).await;
    assert_eq!((stats.accepted, stats.failed, stats.active), (1, 1, 0));
    let text = log.text();
    assert!(
        text.contains("WARN")
            && text.contains(&target.to_string())
            && text.contains("timed out after 300ms"),
        "no warning naming the target and the error in:\n{text}"
    );
}

/// A log destination the test can read back.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[rstest]
#[case::splice(CopyMode::Splice)]
#[case::buffered(CopyMode::Buffered)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_refuses_new_connections_and_lets_an_in_flight_transfer_finish(
    #[case] mode: CopyMode,
) {
    let echo = echo_server().await;
    let fwd = forwarder(echo.addr, mode).await;
    let addr = fwd.local_addr();
    let data = pattern(7, 4 << 20);
    let mut sock = TcpStream::connect(addr).await.unwrap();
    // Half the data goes through before the stop.
    let half = data.len() / 2;
    sock.write_all(&data[..half]).await.unwrap();
    let mut echoed = vec![0; half];
    within("the first half", sock.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(fwd.stats().active, 1);

    fwd.stop_accepting().await;
    let refused = TcpStream::connect(addr).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(io::ErrorKind::ConnectionRefused),
        "a connection was accepted after stop_accepting"
    );
    let drain = Duration::from_secs(30);
    let started = Instant::now();
    let stop = tokio::spawn(fwd.stop(drain));
    // The rest of the transfer completes during the drain.
    let rest = within("the rest of the transfer", round_trip(sock, &data[half..]))
        .await
        .unwrap();
    echoed.extend_from_slice(&rest);
    assert!(echoed == data, "bytes differ");
    let stats = within("stop", stop).await.unwrap();
    assert!(
        started.elapsed() < drain / 2,
        "stop waited for the deadline although the connection had finished"
    );
    let len = data.len() as u64;
    assert_eq!(
        stats,
        ForwarderStats {
            accepted: 1,
            failed: 0,
            active: 0,
            bytes_to_upstream: len,
            bytes_to_client: len,
        }
    );
}

#[rstest]
#[case::splice(CopyMode::Splice)]
#[case::buffered(CopyMode::Buffered)]
#[tokio::test]
async fn stop_cuts_a_stuck_connection_at_the_deadline(#[case] mode: CopyMode) {
    // The upstream accepts and never answers; the client never closes.
    let (accepted_tx, accepted_rx) = oneshot::channel();
    let accepted_tx = std::sync::Mutex::new(Some(accepted_tx));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = serve_with(listener, move |sock| {
        if let Some(tx) = accepted_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        async move {
            let _hold = sock;
            std::future::pending::<()>().await;
        }
    });
    let fwd = forwarder(upstream.addr, mode).await;
    let addr = fwd.local_addr();
    let mut sock = TcpStream::connect(addr).await.unwrap();
    within("the upstream connection", accepted_rx)
        .await
        .unwrap();
    assert_eq!(fwd.stats().active, 1);

    let drain = Duration::from_millis(300);
    let started = Instant::now();
    let stats = within("stop", fwd.stop(drain)).await;
    let took = started.elapsed();
    assert!(
        took >= drain,
        "stop returned after {took:?}, before the drain"
    );
    assert!(
        took < drain + Duration::from_secs(5),
        "stop took {took:?} for a {drain:?} drain"
    );
    assert_eq!((stats.accepted, stats.active), (1, 0));
    let got = within("the client to be cut", read_until_closed(&mut sock)).await;
    assert!(got.is_empty());
    // The listener is gone too.
    let refused = TcpStream::connect(addr).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(io::ErrorKind::ConnectionRefused)
    );
}

#[rstest]
#[case::one_worker(1)]
#[case::three_workers(3)]
#[tokio::test]
async fn dropping_the_forwarder_closes_the_listener_and_cuts_connections(#[case] workers: usize) {
    let echo = echo_server().await;
    let mut cfg = ForwarderConfig::new(loopback0(), echo.addr.to_string());
    cfg.workers = workers;
    let fwd = Forwarder::start(cfg).await.expect("start forwarder");
    let addr = fwd.local_addr();
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"ping").await.unwrap();
    let mut pong = [0; 4];
    within("echo", sock.read_exact(&mut pong)).await.unwrap();
    drop(fwd);
    within("the connection to be cut", read_until_closed(&mut sock)).await;
    until_refused(addr).await;
    // The port is free again: it can be bound.
    TcpListener::bind(addr).await.expect("port released");
}

#[rstest]
#[case::any_port("127.0.0.1:0")]
#[case::other_loopback_address("127.0.0.2:0")]
#[case::fixed_port("fixed")]
#[tokio::test]
async fn bind_address_is_honored(#[case] listen: &str) {
    let asked: SocketAddr = if listen == "fixed" {
        free_port()
    } else {
        listen.parse().unwrap()
    };
    let echo = echo_server().await;
    let fwd = Forwarder::start(ForwarderConfig::new(asked, echo.addr.to_string()))
        .await
        .unwrap();
    let got = fwd.local_addr();
    assert_eq!(got.ip(), asked.ip());
    if asked.port() == 0 {
        assert_ne!(got.port(), 0);
    } else {
        assert_eq!(got.port(), asked.port());
    }
    let sock = TcpStream::connect(got).await.unwrap();
    let echoed = within("echo", round_trip(sock, b"where")).await.unwrap();
    assert_eq!(echoed, b"where");
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Forwarder::start(ForwarderConfig::new(addr, "127.0.0.1:1"))
        .await
        .expect_err("the address is taken");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(
        err.to_string().contains(&addr.to_string()),
        "message does not name {addr}: {err}"
    );
}

#[test]
fn config_defaults_to_a_five_second_connect_timeout() {
    let cfg = ForwarderConfig::new(loopback0(), String::from("gateway:31380"));
    assert_eq!(cfg.connect_timeout, Duration::from_secs(5));
    assert_eq!(cfg.target, "gateway:31380");
    assert_eq!(cfg.listen, loopback0());
}

#[test]
fn config_defaults_to_one_relay_thread() {
    let cfg = ForwarderConfig::new(loopback0(), String::from("gateway:31380"));
    assert_eq!(cfg.workers, 1);
}

/// Any number of workers (0 counts as 1) serves every connection on the one port, counts them
/// all, and stops accepting on every listener.
#[rstest]
#[case::zero(0)]
#[case::one(1)]
#[case::two(2)]
#[case::four(4)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_serves_on_the_same_port_and_all_stop(#[case] workers: usize) {
    const CONNS: usize = 64;
    let echo = echo_server().await;
    let mut cfg = ForwarderConfig::new(loopback0(), echo.addr.to_string());
    cfg.workers = workers;
    let fwd = Forwarder::start(cfg).await.expect("start forwarder");
    let addr = fwd.local_addr();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CONNS {
        clients.spawn(async move {
            let data = pattern(i as u64, 1000 + i);
            let sock = TcpStream::connect(addr).await.expect("connect");
            let got = round_trip(sock, &data).await.expect("round trip");
            assert!(got == data, "connection {i}: bytes differ");
        });
    }
    within("the echo round trips", async {
        while let Some(r) = clients.join_next().await {
            r.expect("client task");
        }
    })
    .await;
    fwd.stop_accepting().await;
    for _ in 0..16 {
        // Every listener is closed: whichever one the kernel would pick, the connection is
        // refused.
        let refused = TcpStream::connect(addr).await;
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
    }
    let stats = within("stop", fwd.stop(Duration::from_secs(10))).await;
    let total: u64 = (0..CONNS).map(|i| (1000 + i) as u64).sum();
    assert_eq!(
        stats,
        ForwarderStats {
            accepted: CONNS as u64,
            failed: 0,
            active: 0,
            bytes_to_upstream: total,
            bytes_to_client: total,
        }
    );
}

#[rstest]
#[case::splice(CopyMode::Splice)]
#[case::buffered(CopyMode::Buffered)]
#[tokio::test]
async fn stats_count_bytes_each_way_exactly(#[case] mode: CopyMode) {
    // The upstream reads the request to end-of-file and answers with a bigger body.
    const REQUEST: usize = 3_001;
    const ANSWER: usize = 700_003;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = serve_with(listener, |mut sock| async move {
        let mut got = Vec::new();
        sock.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), REQUEST);
        sock.write_all(&pattern(3, ANSWER)).await.unwrap();
    });
    let fwd = forwarder(upstream.addr, mode).await;
    assert_eq!(fwd.stats(), ForwarderStats::default());
    for _ in 0..3 {
        let sock = TcpStream::connect(fwd.local_addr()).await.unwrap();
        let got = within("answer", round_trip(sock, &pattern(9, REQUEST)))
            .await
            .unwrap();
        assert!(got == pattern(3, ANSWER));
    }
    let stats = within("stop", fwd.stop(Duration::from_secs(5))).await;
    assert_eq!(
        stats,
        ForwarderStats {
            accepted: 3,
            failed: 0,
            active: 0,
            bytes_to_upstream: 3 * REQUEST as u64,
            bytes_to_client: 3 * ANSWER as u64,
        }
    );
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["bytes_to_client"], 3 * ANSWER as u64);
}
