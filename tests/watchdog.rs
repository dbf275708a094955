//! A stuck scheduler is noticed: `/-/ready` answers 503 and the systemd watchdog is no longer
//! fed, while the HTTP server itself still answers; both come back once probes finish again.
//!
//! One test in a binary of its own: it sets NOTIFY_SOCKET and WATCHDOG_USEC for the daemon it
//! runs in-process, before any other thread exists.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Env, http};
use mailprobe::probe::Outcome;
use mailprobe::scheduler::OutcomeSink;
use mailprobe_testpeers::dovecot::{Dovecot, Options};

/// In front of the daemon's sink: while `hold` is set, a target task that reports is held
/// there, as a blocking call in the reporting path (a write to a full pipe) would hold it.
struct Holding {
    inner: Arc<dyn OutcomeSink>,
    hold: Arc<AtomicBool>,
}

impl OutcomeSink for Holding {
    fn record(&self, o: Outcome) {
        tokio::task::block_in_place(|| {
            while self.hold.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        self.inner.record(o);
    }
}

/// Lets a held task go when dropped.
struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The watchdog pings received so far, read on a thread of its own so that the daemon's
/// notify calls never wait for a full socket.
struct Pings(Arc<std::sync::Mutex<Vec<Instant>>>);

impl Pings {
    fn listen(sock: UnixDatagram) -> Pings {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "WATCHDOG=1")
                {
                    s.lock().unwrap().push(Instant::now());
                }
            }
        });
        Pings(seen)
    }

    /// Pings received after `since`.
    fn after(&self, since: Instant) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t > since)
            .count()
    }
}

#[test]
fn a_stuck_scheduler_fails_readiness_and_starves_the_watchdog() {
    let env = Env::new();
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // SAFETY: the only test of this binary; no other thread reads the environment yet.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &sock_path);
        std::env::set_var("WATCHDOG_USEC", "400000");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dc = Dovecot::start(&env.pki, Options::default());
        // interval 1 s, timeout 1 s: the schedule allows 2 × (1 + 2 × 1) = 6 s of silence.
        let cfg = env.config(&format!(
            "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{}",
            env.imap_target("a", dc.ports.imaps, "")
        ));
        let hold = Arc::new(AtomicBool::new(false));
        let h = hold.clone();
        // A failing assertion must not leave the task held: the runtime would wait for it.
        let _release = Release(hold.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let daemon = tokio::spawn(mailprobe::daemon::run_with(
            cfg,
            listener,
            shutdown.clone(),
            Box::new(move |inner| Arc::new(Holding { inner, hold: h })),
        ));
        let successes = || async {
            let m = http(addr, "GET", "/metrics").await.1;
            common::group_successes(&m, "a").unwrap_or(0.0)
        };
        let pings = Pings::listen(sock);
        let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));

        common::eventually(20, "a first success", || async {
            (successes().await >= 1.0).then_some(())
        })
        .await;
        assert_eq!(http(addr, "GET", "/-/ready").await.0, 200);
        let t = Instant::now();
        pause(1000).await;
        assert!(pings.after(t) >= 2, "fed every 200 ms while probing");

        // The target's task is held: no probe finishes any more.
        hold.store(true, Ordering::Release);
        let stuck_at = Instant::now();
        let body = common::eventually(20, "/-/ready to fail", || async {
            let (status, body) = http(addr, "GET", "/-/ready").await;
            (status == 503).then_some(body)
        })
        .await;
        assert!(body.contains("no probe has finished"), "{body}");
        assert!(
            stuck_at.elapsed() >= Duration::from_secs(5),
            "not before the schedule allows"
        );
        // The process still serves; it is just not probing.
        assert_eq!(http(addr, "GET", "/metrics").await.0, 200);
        // A ping decided just before may still be on its way; after that, none.
        pause(300).await;
        let t = Instant::now();
        pause(2000).await;
        assert_eq!(pings.after(t), 0, "the watchdog is starved while stuck");

        hold.store(false, Ordering::Release);
        let n = successes().await;
        common::eventually(20, "probes to finish again", || async {
            (successes().await > n).then_some(())
        })
        .await;
        assert_eq!(http(addr, "GET", "/-/ready").await.0, 200);
        let t = Instant::now();
        pause(1000).await;
        assert!(pings.after(t) >= 2, "fed again");

        shutdown.cancel();
        daemon.await.unwrap().unwrap();
    });
}
