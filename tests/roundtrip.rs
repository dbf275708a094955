//! The round-trip probe over the real Postfix → LMTP → Dovecot path.

mod common;

use std::time::Duration;

use common::{Daemon, Env, failure, phases, probe_first, sample};
use mailprobe::probe::{self, Phase, ProbeContext};
use mailprobe_testpeers::dovecot::{self, Dovecot, Options};
use mailprobe_testpeers::postfix::Postfix;

struct Stack {
    dovecot: Dovecot,
    postfix: Postfix,
}

fn stack(env: &Env, opts: Options) -> Stack {
    let dovecot = Dovecot::start(&env.pki, opts);
    let postfix = Postfix::start(&env.pki, &dovecot, None);
    Stack { dovecot, postfix }
}

/// An SMTP leg, an IMAP leg and the round trip over them.
fn roundtrip_config(env: &Env, s: &Stack, extra: &str) -> String {
    format!(
        "{}{}[[target]]\nname = \"rt\"\nregion = \"test\"\nprotocol = \"roundtrip\"\n\
         smtp_target = \"rt-send\"\nimap_target = \"rt-inbox\"\n{extra}\n",
        env.smtp_target("rt-send", s.postfix.ports.submission, "timeout = \"3s\""),
        env.imap_target("rt-inbox", s.dovecot.ports.imaps, "timeout = \"3s\""),
    )
}

fn rt_target(cfg: &mailprobe::config::Config) -> std::sync::Arc<mailprobe::config::Target> {
    cfg.targets.iter().find(|t| t.name == "rt").unwrap().clone()
}

#[tokio::test]
async fn a_round_trip_is_delivered_quickly_and_leaves_no_mail_behind() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let cfg = env.config(&roundtrip_config(&env, &s, "delivery_timeout = \"20s\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
    assert_eq!(
        phases(&o),
        [Phase::Receive, Phase::Send, Phase::Delivery, Phase::Cleanup]
    );
    let d = o.delivery.as_ref().unwrap();
    let latency = d.latency.expect("a delivery latency");
    // Postfix → LMTP → Dovecot on one machine: well under a second.
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert!(!o.slow);
    assert!(d.late.is_empty() && d.swept == 0, "{d:?}");
    assert!(
        !s.dovecot
            .mailbox_contains(dovecot::USER, "X-Mailprobe-Token"),
        "the probe message was deleted"
    );
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 0);
}

#[tokio::test]
async fn the_sweep_removes_old_probe_mail_and_never_touches_other_mail() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let day = Duration::from_secs(86_400);
    s.dovecot.plant(
        dovecot::USER,
        "From: a@example.test\nSubject: mailprobe probe 0ld\nX-Mailprobe-Token: 0ld\n\nold probe\n",
        2 * day,
    );
    s.dovecot.plant(
        dovecot::USER,
        "From: a@example.test\nSubject: a real letter\n\nkeep me, X-Mailprobe-Token is only mentioned\n",
        2 * day,
    );
    s.dovecot.plant(
        dovecot::USER,
        "From: a@example.test\nSubject: mailprobe probe fresh\nX-Mailprobe-Token: fr3sh\n\nanother instance's\n",
        Duration::from_secs(60),
    );
    let cfg = env.config(&roundtrip_config(&env, &s, "cleanup_age = \"1h\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(o.delivery.as_ref().unwrap().swept, 1);
    assert!(!s.dovecot.mailbox_contains(dovecot::USER, "old probe"));
    assert!(s.dovecot.mailbox_contains(dovecot::USER, "keep me"));
    // Younger than cleanup_age and not ours: left alone (another location may be waiting).
    assert!(
        s.dovecot
            .mailbox_contains(dovecot::USER, "another instance's")
    );
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 2);
}

#[tokio::test]
async fn stopped_delivery_is_delivery_timeout_and_late_mail_is_counted_and_removed() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let cfg = env.config(&roundtrip_config(&env, &s, "delivery_timeout = \"2s\""));
    let rt = rt_target(&cfg);
    let ctx = ProbeContext::new();

    // Submission still answers, but nothing is delivered.
    s.postfix.set("defer_transports", "lmtp");
    let o = probe::run(&rt, &ctx).await;
    assert_eq!(failure(&o), ("delivery_timeout", "delivery"), "{o:?}");
    assert_eq!(ctx.pending.len("rt"), 1);
    assert!(o.phase(Phase::Delivery).unwrap() >= Duration::from_secs(2));

    // Delivery resumes: the deferred message lands in the mailbox.
    s.postfix.set("defer_transports", "");
    s.postfix.flush();
    common::eventually(30, "the deferred message delivered", || async {
        s.dovecot
            .mailbox_contains(dovecot::USER, "X-Mailprobe-Token")
            .then_some(())
    })
    .await;

    // The next run succeeds, counts the late one and removes both.
    let o = probe::run(&rt, &ctx).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(d.late.len(), 1, "{d:?}");
    assert!(d.late[0] >= Duration::from_secs(2), "{d:?}");
    assert!(ctx.pending.is_empty("rt"));
    assert!(
        !s.dovecot
            .mailbox_contains(dovecot::USER, "X-Mailprobe-Token")
    );
}

#[tokio::test]
async fn a_failing_smtp_leg_gives_its_class_at_send() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let text = roundtrip_config(&env, &s, "").replace(
        &env.dir.path().join("rt-send.pass").display().to_string(),
        &env.secret("bad.pass", "wrong").display().to_string(),
    );
    let cfg = env.config(&text);
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("auth_rejected", "send"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.starts_with("auth SMTP 535 5.7.8"), "{detail}");
    assert!(o.phase(Phase::Delivery).is_none());
}

#[tokio::test]
async fn a_failing_imap_leg_gives_its_class_at_receive() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let text = roundtrip_config(&env, &s, "").replace(
        &env.dir.path().join("rt-inbox.pass").display().to_string(),
        &env.secret("bad.pass", "wrong").display().to_string(),
    );
    let o = probe::run(&rt_target(&env.config(&text)), &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("auth_rejected", "receive"), "{o:?}");
    assert!(
        o.phase(Phase::Send).is_none(),
        "nothing is sent when the mailbox cannot be watched"
    );
}

#[tokio::test]
async fn without_idle_or_uidplus_it_polls_and_expunges() {
    let env = Env::new();
    let s = stack(
        &env,
        Options {
            imap_capability: Some("IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE".into()),
            ..Options::default()
        },
    );
    let cfg = env.config(&roundtrip_config(&env, &s, "poll_interval = \"200ms\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}\n{}", s.dovecot.log());
    assert!(o.delivery.unwrap().latency.unwrap() < Duration::from_secs(2));
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 0);
}

#[tokio::test]
async fn two_round_trips_sharing_a_mailbox_only_delete_their_own() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let text = format!(
        "{}[[target]]\nname = \"rt2\"\nprotocol = \"roundtrip\"\nsmtp_target = \"rt-send\"\n\
         imap_target = \"rt-inbox\"\n",
        roundtrip_config(&env, &s, "")
    );
    let cfg = env.config(&text);
    let outcomes = common::probe_all(&cfg).await;
    for o in outcomes.iter().filter(|o| o.target.name.starts_with("rt")) {
        if o.target.name == "rt" || o.target.name == "rt2" {
            assert!(o.success(), "{o:?}");
            assert_eq!(o.delivery.as_ref().unwrap().swept, 0);
        }
    }
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 0);
}

#[tokio::test]
async fn a_slow_delivery_is_success_marked_slow() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    // Any delivery is slower than 1 ms.
    let cfg = env.config(&roundtrip_config(&env, &s, "slow_threshold = \"1ms\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success() && o.slow, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_run_in_the_daemon_and_export_delivery_latency() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let text = roundtrip_config(&env, &s, "interval = \"15s\"\ndelivery_timeout = \"4s\"");
    let d = Daemon::start(env.config(&text)).await;
    let m = d.wait_probes("rt", "success", 1.0).await;
    let rt = [("target", "rt"), ("protocol", "roundtrip")];
    assert_eq!(sample(&m, "mailprobe_probe_success", &rt), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, "mailprobe_roundtrip_delivery_seconds_count", &rt),
        Some(1.0)
    );
    let last = sample(&m, "mailprobe_roundtrip_last_delivery_seconds", &rt).unwrap();
    assert!(last > 0.0 && last < 1.0, "{last}");
    assert_eq!(sample(&m, "mailprobe_roundtrip_late_total", &rt), Some(0.0));
    assert_eq!(
        sample(&m, "mailprobe_roundtrip_swept_total", &rt),
        Some(0.0)
    );
    assert!(
        sample(
            &m,
            "mailprobe_probe_phase_duration_seconds",
            &[("target", "rt"), ("phase", "delivery")]
        )
        .unwrap()
            > 0.0
    );
    d.stop().await;
}

#[tokio::test]
async fn mailprobe_probe_runs_a_round_trip_once() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let cfg = env.config(&roundtrip_config(&env, &s, ""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "the SMTP leg target itself works: {o:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["probe", "-c", env.config_path().to_str().unwrap(), "rt"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("receive=") && stdout.contains("delivery="),
        "{stdout}"
    );
    assert!(stdout.contains("delivered in "), "{stdout}");
}
