//! Tracked futures, streams and async I/O: live and dropped tasks per
//! spawn site, idle time since the last poll, the stuck-task flag.
//!
//! Tests that move leakscope's clock (process-wide) take `CLOCK`; every
//! test has its own sites (names or types).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use leakscope::testing::advance_clock;
use leakscope::{track, ObjectSite, Tracked};

#[path = "common/sites.rs"]
mod sites;
use sites::site;

static CLOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    CLOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A future pending until its flag is set.
struct Gate(Arc<AtomicBool>);

impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Noop));
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

/// A minimal executor: polls on this thread, parks between wake-ups.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn unpin_exactly_when_the_future_is() {
    fn unpin<T: Unpin>() {}
    unpin::<Tracked<std::future::Ready<u8>>>();
    unpin::<Tracked<Gate>>();
    // `Tracked<impl Future>` of an async block is !Unpin; it runs pinned.
    let v = block_on(track!(async { 7 }, "unpin async block"));
    assert_eq!(v, 7);
}

#[test]
fn block_on_counts_live_and_dropped() {
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    let worker = std::thread::spawn(move || {
        block_on(track!(
            async move {
                let got = rx.recv().unwrap_or(0);
                got + 1
            },
            "block_on task"
        ))
    });
    // The future is live while the worker is blocked in it.
    for _ in 0..200 {
        if sites::sites(|o| o.name.as_deref() == Some("block_on task"))
            .first()
            .is_some_and(|s| s.live == 1)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = site("block_on task");
    assert_eq!((s.live, s.polled_live), (1, 1), "{s:?}");
    tx.send(41).unwrap();
    assert_eq!(worker.join().unwrap(), 42);
    let s = site("block_on task");
    assert_eq!((s.created, s.dropped, s.live, s.polled_live), (1, 1, 0, 0));
}

#[test]
fn tokio_spawn_counts_tasks_by_spawn_site() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut handles = Vec::new();
    let mut line = 0;
    for _ in 0..5 {
        let mut rx = tx.subscribe();
        line = line!() + 1;
        let task = track!(async move { rx.recv().await.is_ok() }, route = "/checkout");
        handles.push(rt.spawn(task));
    }
    let finished: Vec<_> = (0..3)
        .map(|_| rt.spawn(track!(async {}, route = "/health")))
        .collect();
    rt.block_on(async {
        for h in finished {
            h.await.unwrap();
        }
        tokio::task::yield_now().await;
    });
    let spawn_site = |snap: &leakscope::Snapshot| -> ObjectSite {
        snap.objects
            .iter()
            .find(|o| o.file.ends_with("track_tasks.rs") && o.line == line)
            .cloned()
            .expect("spawn site")
    };
    let mut s = spawn_site(&leakscope::snapshot());
    for _ in 0..200 {
        if s.polled_live == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        s = spawn_site(&leakscope::snapshot());
    }
    assert_eq!((s.live, s.polled_live, s.dropped), (5, 5, 0), "{s:?}");
    assert_eq!(s.labels[0].value, "/checkout");
    assert_eq!(s.labels[0].live, 5);
    tx.send(()).unwrap();
    rt.block_on(async {
        for h in handles {
            assert!(h.await.unwrap());
        }
    });
    let s = spawn_site(&leakscope::snapshot());
    assert_eq!((s.live, s.polled_live, s.dropped), (0, 0, 5), "{s:?}");
    assert!(s.labels.iter().all(|l| l.live == 0));
}

#[test]
fn idle_time_grows_while_pending_and_resets_when_polled() {
    let _g = serial();
    let flag = Arc::new(AtomicBool::new(false));
    let mut task = track!(Gate(flag.clone()), "idle gate");
    let s = site("idle gate");
    assert_eq!((s.live, s.polled_live), (1, 0), "never polled yet");
    assert!(poll_once(&mut task).is_pending());
    advance_clock(Duration::from_secs(8));
    let s = site("idle gate");
    assert_eq!(s.polled_live, 1);
    let idle = s.oldest_idle.expect("idle");
    assert!(idle >= Duration::from_secs(8), "{idle:?}");
    assert_eq!(s.idle.count(), 1);
    assert!(leakscope::snapshot()
        .to_string()
        .contains("tasks: 1 polled live, not polled for up to"),);
    // Polled again: idle resets (an upper bound of about a millisecond plus
    // the clock's tick).
    assert!(poll_once(&mut task).is_pending());
    let idle = site("idle gate").oldest_idle.expect("idle");
    assert!(idle < Duration::from_secs(1), "{idle:?}");
    flag.store(true, Ordering::Release);
    assert!(poll_once(&mut task).is_ready());
    drop(task);
    let s = site("idle gate");
    assert_eq!((s.live, s.polled_live, s.oldest_idle), (0, 0, None));
}

#[test]
fn select_drops_the_losing_future() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let loser = track!(Gate(Arc::new(AtomicBool::new(false))), "select loser");
        tokio::select! {
            _ = loser => unreachable!("the gate never opens"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    });
    let s = site("select loser");
    assert_eq!((s.created, s.dropped, s.live, s.polled_live), (1, 1, 0, 0));
}

#[test]
fn stuck_tasks_are_flagged() {
    let _g = serial();
    // One spawn site.
    fn gate(open: bool) -> Tracked<Gate> {
        track!(Gate(Arc::new(AtomicBool::new(open))), "stuck gate")
    }
    // Siblings that finish at once ...
    for _ in 0..30 {
        let mut t = gate(true);
        assert!(poll_once(&mut t).is_ready());
    }
    // ... and five that wait for ever.
    let mut stuck: Vec<_> = (0..5).map(|_| gate(false)).collect();
    for t in &mut stuck {
        assert!(poll_once(t).is_pending());
    }
    assert!(site("stuck gate").suspected.is_none());
    advance_clock(Duration::from_secs(30));
    let s = site("stuck gate");
    let why = s
        .suspected
        .as_deref()
        .unwrap_or_else(|| panic!("not flagged: {s:?}"));
    assert!(
        why.contains("5 of 5 live task(s) have not been polled for more than 1s"),
        "{why}"
    );
    #[cfg(feature = "prometheus")]
    {
        let prom = leakscope::prometheus::render(&leakscope::snapshot());
        let oldest = prom
            .lines()
            .find(|l| {
                l.starts_with("leakscope_tasks_oldest_idle_seconds{") && l.contains("stuck gate")
            })
            .unwrap_or_else(|| panic!("no oldest idle series:\n{prom}"));
        let v: f64 = oldest.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v >= 30.0, "{oldest}");
        assert!(prom.lines().any(|l| {
            l.starts_with("leakscope_tasks_idle_seconds_count{")
                && l.contains("stuck gate")
                && l.ends_with(" 5")
        }));
    }
    drop(stuck);
}

#[cfg(feature = "futures")]
#[test]
fn a_tracked_stream_is_a_stream() {
    use futures_core::Stream;

    struct Count(u32);
    impl Stream for Count {
        type Item = u32;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u32>> {
            self.0 += 1;
            Poll::Ready((self.0 <= 3).then_some(self.0))
        }
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut s = track!(Count(0), "count stream");
    let mut got = Vec::new();
    while let Poll::Ready(Some(v)) = Pin::new(&mut s).poll_next(&mut cx) {
        got.push(v);
    }
    assert_eq!(got, [1, 2, 3]);
    assert_eq!(site("count stream").polled_live, 1);
    drop(s);
    let site = site("count stream");
    assert_eq!((site.live, site.dropped, site.polled_live), (0, 1, 0));
}

#[cfg(feature = "tokio")]
#[test]
fn a_tracked_tcp_stream_round_trips() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let mut conn = track!(conn, "accepted conn");
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&buf).await.unwrap();
            conn.flush().await.unwrap();
        });
        let mut client = track!(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            "client conn"
        );
        client.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
        server.await.unwrap();
        let s = site("client conn");
        assert_eq!((s.live, s.polled_live), (1, 1), "{s:?}");
        let a = site("accepted conn");
        assert_eq!((a.live, a.dropped), (0, 1), "{a:?}");
        client.shutdown().await.unwrap();
    });
    let s = site("client conn");
    assert_eq!((s.live, s.dropped, s.polled_live), (0, 1, 0));
}
