//! The results: one table of figures against their targets, then the details behind each.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::scenarios::Ctx;

/// Whether a figure meets its target.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the target.
    Met,
    /// Outside it.
    Missed,
    /// A figure without a target (context).
    Info,
}

/// One row of the results table.
pub struct Figure {
    figure: String,
    target: String,
    measured: String,
    verdict: Verdict,
}

/// Everything one benchmark run found.
pub struct Report {
    quick: bool,
    figures: Vec<Figure>,
    sections: Vec<(String, String)>,
    took: Duration,
}

impl Report {
    /// An empty report.
    pub fn new(quick: bool) -> Report {
        Report {
            quick,
            figures: Vec::new(),
            sections: Vec::new(),
            took: Duration::ZERO,
        }
    }

    /// Adds a row.
    pub fn figure(&mut self, figure: &str, target: &str, measured: String, verdict: Verdict) {
        eprintln!("  {figure}: {measured} (target {target})");
        self.figures.push(Figure {
            figure: figure.into(),
            target: target.into(),
            measured,
            verdict,
        });
    }

    /// Adds a section of details (Markdown).
    pub fn section(&mut self, title: &str, body: String) {
        self.sections.push((title.into(), body));
    }

    /// Records how long the whole run took.
    pub fn finish(&mut self, took: Duration) {
        self.took = took;
    }

    /// The whole report as Markdown.
    pub fn markdown(&self, ctx: &Ctx) -> String {
        let mut s = String::new();
        let mode = if self.quick { "quick" } else { "full" };
        let _ = writeln!(s, "# mailprobe benchmark results ({mode} run)\n");
        let _ = writeln!(
            s,
            "Produced by `bench/run{}` in {:.0} s (measurements only, without the build).\n",
            if self.quick { " --quick" } else { "" },
            self.took.as_secs_f64()
        );
        let _ = writeln!(s, "## Machine\n\n{}", machine(ctx));
        let _ = writeln!(s, "## Figures\n");
        let _ = writeln!(s, "| figure | target | measured | |");
        let _ = writeln!(s, "|---|---|---|---|");
        for f in &self.figures {
            let v = match f.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "**missed**",
                Verdict::Info => "",
            };
            let _ = writeln!(s, "| {} | {} | {} | {v} |", f.figure, f.target, f.measured);
        }
        for (title, body) in &self.sections {
            let _ = writeln!(s, "\n## {title}\n\n{body}");
        }
        s
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "?".into())
}

fn machine(ctx: &Ctx) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?".into(), |(_, m)| m.trim().to_string());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or("?".into(), |k| format!("{:.1} GiB", k as f64 / 1048576.0));
    let debian = std::fs::read_to_string("/etc/debian_version")
        .unwrap_or_else(|_| "?".into())
        .trim()
        .to_string();
    let mut s = String::new();
    let rows = [
        ("CPU", format!("{model}, {} cores", ctx.cores)),
        ("memory", mem),
        ("kernel", run("uname", &["-sr"])),
        ("Debian", debian),
        ("mailprobe", ctx.version.clone()),
        ("rustc", run("rustc", &["--version"])),
        (
            "blackbox_exporter",
            run(&ctx.blackbox.display().to_string(), &["--version"]),
        ),
        ("Dovecot", run("dovecot", &["--version"])),
        ("Postfix", run("postconf", &["-d", "mail_version"])),
        ("load average at start", ctx.load_at_start.clone()),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "- {k}: {v}");
    }
    s
}
