//! Log setup: logfmt lines or JSON on stderr, filtered by `RUST_LOG` or the config's
//! `log_level`, written so that logging can never stop probing and never shows a secret.
//!
//! - Lines go through a bounded queue to a thread of their own that writes stderr. A closed
//!   stderr (`mailprobe run 2>&1 | head`) or one nobody reads (a full pipe blocks every write)
//!   only loses lines, counted in `mailprobe_log_lines_dropped_total`; no task that logs ever
//!   waits for stderr or fails because of it.
//! - Other crates log at most at `warn`, whatever `RUST_LOG` asks for: at debug and trace they
//!   print protocol traffic (async-imap every IMAP command, LOGIN passwords and AUTHENTICATE
//!   blobs included; h2 and hyper headers such as Authorization; rustls handshakes).
//! - Under systemd (stderr is the stream named by `JOURNAL_STREAM`) each line starts with its
//!   syslog priority (`<3>` error ... `<7>` debug, sd-daemon(3)) and leaves the time to journald.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Lines waiting for stderr; beyond this, new lines are dropped (and counted).
const QUEUE_LINES: usize = 8192;
/// How long the last lines may take to reach stderr when the process ends.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(1);
/// Bytes written to stderr in one call, at most (lines queued meanwhile are batched).
const BATCH_BYTES: usize = 64 * 1024;
/// Target prefix of mailprobe's own events (the library and the binary): the only ones allowed
/// below `warn`.
const OWN_TARGET: &str = "mailprobe";

static DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::IntCounter::new(
        "mailprobe_log_lines_dropped_total",
        "Log lines dropped because stderr could not take them (closed, or not read and full); probing goes on.",
    )
    .expect("valid metric")
});

/// The counter of log lines lost to a closed or full stderr, for the daemon's registry.
pub fn dropped_lines() -> prometheus::IntCounter {
    DROPPED.clone()
}

/// Keeps the log writer running; dropping it (at the end of `main`) flushes what is queued,
/// waiting at most a second so that a stuck stderr cannot hold up the exit.
#[must_use = "dropping the guard at once loses the last lines"]
pub struct Guard {
    queue: Option<SyncSender<Msg>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(queue) = self.queue.take() else {
            return;
        };
        let deadline = Instant::now() + FLUSH_AT_EXIT;
        let (done, flushed) = std::sync::mpsc::sync_channel(1);
        let mut msg = Msg::Flush(done);
        loop {
            match queue.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return,
            }
        }
        let _ = flushed.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Hands each formatted line to the writer thread without ever waiting for it.
struct Lossy(SyncSender<Msg>);

/// One event's line, queued when the formatter is done with it.
struct Line<'a> {
    buf: Vec<u8>,
    queue: &'a SyncSender<Msg>,
}

impl<'a> MakeWriter<'a> for Lossy {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            buf: Vec::new(),
            queue: &self.0,
        }
    }
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        if self.queue.try_send(Msg::Line(line)).is_err() {
            DROPPED.inc();
        }
    }
}

/// The writer thread: batches queued lines into few writes; once stderr is closed (EPIPE) it
/// only counts what it cannot write. A blocked write blocks only this thread.
fn drain(queue: Receiver<Msg>, mut out: impl Write) {
    let mut closed = false;
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(first) = queue.recv() {
        let mut lines = 0u64;
        let mut flushed = Vec::new();
        let mut take = |m: Msg, batch: &mut Vec<u8>| match m {
            Msg::Line(l) => {
                batch.extend_from_slice(&l);
                lines += 1;
            }
            Msg::Flush(done) => flushed.push(done),
        };
        take(first, &mut batch);
        while batch.len() < BATCH_BYTES {
            match queue.try_recv() {
                Ok(m) => take(m, &mut batch),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            if closed {
                DROPPED.inc_by(lines);
            } else if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
                closed = e.kind() == io::ErrorKind::BrokenPipe;
                DROPPED.inc_by(lines);
            }
            batch.clear();
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Whether stderr is the journal stream systemd named in `JOURNAL_STREAM` (`device:inode`), as
/// sd-daemon(3) says to check: the variable is inherited by children whose stderr goes elsewhere.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Installs the global subscriber writing to stderr; keep the guard until the process ends.
///
/// `default_level` applies unless `RUST_LOG` is set; either way other crates stay at `warn` or
/// quieter (see the module doc).
pub fn init(format: LogFormat, default_level: &str) -> Guard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (queue, lines) = std::sync::mpsc::sync_channel(QUEUE_LINES);
    let spawned = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || drain(lines, io::stderr()));
    if spawned.is_err() {
        // No thread, no logs; probing does not need them.
        return Guard { queue: None };
    }
    let journal = stderr_is_journal();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(Lossy(queue.clone()))
        .log_internal_errors(false);
    // A second init (tests) is harmless: the first subscriber stays.
    let installed = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(quiet_libraries())
            .with(filter)
            .with(layer.event_format(Logfmt { journal }))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(quiet_libraries())
            .with(filter)
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_target(false)
                    .map_event_format(|json| Prefixed {
                        journal,
                        inner: json,
                    }),
            )
            .try_init(),
    };
    if installed.is_err() {
        return Guard { queue: None };
    }
    std::panic::set_hook(Box::new(log_panic));
    Guard { queue: Some(queue) }
}

/// The panic hook: the message goes through the log like any other line (`error`, `<3>` in the
/// journal) instead of straight to stderr, where a full pipe would block the panicking worker.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        tracing::error!(thread, panic = %info, %backtrace, "a thread panicked");
    } else {
        tracing::error!(thread, panic = %info, "a thread panicked");
    }
}

/// Mailprobe's own events at any level; every other crate's at `warn` and above only. A filter
/// of its own, so `RUST_LOG` (the other filter) can narrow it but never widen it.
fn quiet_libraries() -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target(OWN_TARGET, LevelFilter::TRACE)
}

/// The syslog priority journald reads at the start of a line (sd-daemon(3)).
fn priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// Another format with the syslog priority in front when writing to the journal.
struct Prefixed<F> {
    journal: bool,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.journal {
            writer.write_str(priority(*event.metadata().level()))?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// logfmt: `ts=... level=warn msg="probe failed" target=imap-eu class=auth_rejected ...`, every
/// value bare when it can be and quoted (with `\"`, `\\`, `\n` escapes) when not.
struct Logfmt {
    journal: bool,
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        if self.journal {
            w.write_str(priority(level))?;
        } else {
            w.write_str("ts=")?;
            tracing_subscriber::fmt::time::SystemTime.format_time(&mut w)?;
            w.write_char(' ')?;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        write!(w, "level={}", level.as_str().to_ascii_lowercase())?;
        w.write_str(" msg=")?;
        quote(&mut w, &fields.message)?;
        // Events from other crates say where they come from (`log` records carry it as a field).
        let module = fields
            .log_target
            .as_deref()
            .unwrap_or(event.metadata().target());
        if !module.starts_with(OWN_TARGET) {
            w.write_str(" module=")?;
            value(&mut w, module)?;
        }
        w.write_str(&fields.rest)?;
        writeln!(w)
    }
}

/// An event's fields, the message apart.
#[derive(Default)]
struct Fields {
    message: String,
    log_target: Option<String>,
    rest: String,
}

impl Fields {
    fn text(&mut self, field: &Field, v: &str) {
        match field.name() {
            "message" => self.message.push_str(v),
            "log.target" => self.log_target = Some(v.to_string()),
            n if n.starts_with("log.") => {}
            n => {
                let _ = write!(self.rest, " {n}=");
                let _ = value(&mut self.rest, v);
            }
        }
    }

    fn bare(&mut self, field: &Field, v: impl fmt::Display) {
        let _ = write!(self.rest, " {}={v}", field.name());
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, v: &str) {
        self.text(field, v);
    }

    fn record_debug(&mut self, field: &Field, v: &dyn fmt::Debug) {
        self.text(field, &format!("{v:?}"));
    }

    fn record_error(&mut self, field: &Field, v: &(dyn std::error::Error + 'static)) {
        self.text(field, &v.to_string());
    }

    fn record_f64(&mut self, field: &Field, v: f64) {
        if v.is_finite() {
            self.bare(field, v);
        } else {
            self.text(field, &v.to_string());
        }
    }

    fn record_i64(&mut self, field: &Field, v: i64) {
        self.bare(field, v);
    }

    fn record_u64(&mut self, field: &Field, v: u64) {
        self.bare(field, v);
    }

    fn record_bool(&mut self, field: &Field, v: bool) {
        self.bare(field, v);
    }
}

/// Writes `v` bare when logfmt allows it, quoted otherwise.
fn value(w: &mut impl fmt::Write, v: &str) -> fmt::Result {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| !(c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control()));
    if bare { w.write_str(v) } else { quote(w, v) }
}

/// Writes `v` double-quoted, escaping quotes, backslashes and control characters.
fn quote(w: &mut impl fmt::Write, v: &str) -> fmt::Result {
    w.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if c.is_control() => write!(w, "\\u{{{:04x}}}", u32::from(c))?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> String {
        let mut out = String::new();
        value(&mut out, s).unwrap();
        out
    }

    #[test]
    fn a_panic_is_logged_as_an_error_line() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(Lossy(tx))
                .event_format(Logfmt { journal: true }),
        );
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(log_panic));
        let caught = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| panic!("boom \"quoted\""))
        });
        std::panic::set_hook(hook);
        assert!(caught.is_err());
        let Ok(Msg::Line(line)) = rx.try_recv() else {
            panic!("no line logged");
        };
        let line = String::from_utf8(line).unwrap();
        assert!(
            line.starts_with("<3>level=error msg=\"a thread panicked\" thread="),
            "{line}"
        );
        assert!(line.contains("boom \\\"quoted\\\""), "{line}");
        assert!(
            line.ends_with("\"\n") && line.matches('\n').count() == 1,
            "{line}"
        );
    }

    #[test]
    fn values_are_bare_only_when_logfmt_allows() {
        assert_eq!(v("imap-eu"), "imap-eu");
        assert_eq!(v("127.0.0.1:993"), "127.0.0.1:993");
        assert_eq!(v(""), "\"\"");
        assert_eq!(v("a b"), "\"a b\"");
        assert_eq!(v("k=v"), "\"k=v\"");
        assert_eq!(v("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(v("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(v("bell\u{7}"), "\"bell\\u{0007}\"");
    }

    /// A writer that takes `accept` bytes, then fails like a closed pipe.
    struct Closing {
        accept: usize,
        written: Vec<u8>,
    }

    impl Write for Closing {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.written.len() + b.len() > self.accept {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.written.extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stderr_only_counts_lost_lines() {
        let before = DROPPED.get();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let writer = std::thread::spawn(move || {
            drain(
                rx,
                Closing {
                    accept: 6,
                    written: Vec::new(),
                },
            )
        });
        let lossy = Lossy(tx);
        // The first line is written (and flushed through) before the pipe "closes".
        lossy.make_writer().write_all(b"one\n").unwrap();
        let (done, flushed) = std::sync::mpsc::sync_channel(1);
        lossy.0.send(Msg::Flush(done)).unwrap();
        flushed.recv().unwrap();
        for _ in 0..3 {
            lossy.make_writer().write_all(b"more\n").unwrap();
        }
        drop(lossy);
        writer.join().unwrap();
        assert_eq!(DROPPED.get() - before, 3);
    }
}
