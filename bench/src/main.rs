//! The mailprobe benchmark: starts its own peers on 127.0.0.1 (Dovecot, Postfix, a small IMAP
//! responder), runs mailprobe and prometheus-blackbox-exporter side by side, and writes the
//! figures of BENCHMARKS.md as a Markdown table.
//!
//! Run it through `bench/run` (which installs the peers and builds the release binaries).
#![forbid(unsafe_code)]

mod abuse;
mod http;
mod imapd;
mod multiloc;
mod procfs;
mod procs;
mod prom;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};

/// Benchmark mailprobe against local peers and blackbox_exporter; prints and writes a table.
#[derive(Parser)]
struct Args {
    /// Shorter windows and one round each (about two minutes); figures are noisier.
    #[arg(long)]
    quick: bool,
    /// The mailprobe binary under test.
    #[arg(long, default_value = "target/release/mailprobe")]
    mailprobe: PathBuf,
    /// The same mailprobe built with symbols (`cargo build --profile profiling`), for the
    /// callgrind profile: the same code as release, so the same instruction counts.
    #[arg(long, default_value = "target/profiling/mailprobe")]
    profiled: PathBuf,
    /// The blackbox_exporter binary to compare with.
    #[arg(long, default_value = "/usr/bin/prometheus-blackbox-exporter")]
    blackbox: PathBuf,
    /// Where the Markdown results go.
    #[arg(long, default_value = "bench/results/latest.md")]
    out: PathBuf,
    /// Run only these scenarios (default: all; callgrind and shard are skipped with --quick).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Keep the scratch directory (configs, logs) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Another mailprobe binary to run the http-flood and http-auth scenarios against too,
    /// for before/after figures (`bench/run --baseline-ref REF` builds one from a git ref).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// What to call the baseline in the report.
    #[arg(long, default_value = "baseline")]
    baseline_name: String,
}

/// The parts of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 10,000 targets at 60 s: startup, CPU, RSS, scrape time, schedule jitter.
    Scale,
    /// 10,000 targets: RSS before and after four reloads (three unchanged, one target changed).
    Reload,
    /// Greeting-phase bias at 1,000 concurrent probes against an exact 200 ms greeting delay.
    Bias,
    /// CPU per IMAP STARTTLS probe, mailprobe vs blackbox_exporter, against Dovecot.
    Imap,
    /// CPU per SMTP submission probe, mailprobe vs blackbox_exporter, against Postfix.
    Smtp,
    /// Instructions per IMAP probe under callgrind (repeatable).
    Callgrind,
    /// 10,000 targets split over two shards.
    Shard,
    /// 369 idle + 2,000 slowloris connections against a daemon with `ulimit -n 256`.
    HttpFlood,
    /// 128 connections sending wrong basic-auth passwords.
    HttpAuth,
    /// A status instance reading 10,000 targets × 3 locations from a real Prometheus.
    Multilocation,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mailprobe::install_crypto_provider();
    let wanted = |s: Scenario| {
        if args.only.is_empty() {
            !(args.quick && matches!(s, Scenario::Callgrind | Scenario::Shard))
        } else {
            args.only.contains(&s)
        }
    };
    let started = Instant::now();
    let mut ctx = scenarios::Ctx::new(&args.mailprobe, &args.profiled, &args.blackbox, args.quick)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = report::Report::new(args.quick);
    let result = rt.block_on(async {
        if wanted(Scenario::Scale) {
            scenarios::scale(&mut ctx, &mut report).await?;
        }
        if wanted(Scenario::Reload) {
            scenarios::reload(&mut ctx, &mut report).await?;
        }
        if wanted(Scenario::Bias) {
            scenarios::bias(&mut ctx, &mut report).await?;
        }
        if wanted(Scenario::Imap) || wanted(Scenario::Smtp) || wanted(Scenario::Callgrind) {
            scenarios::real_peers(
                &mut ctx,
                &mut report,
                wanted(Scenario::Imap),
                wanted(Scenario::Smtp),
                wanted(Scenario::Callgrind),
            )
            .await?;
        }
        if wanted(Scenario::Shard) {
            scenarios::shard(&mut ctx, &mut report).await?;
        }
        let mut builds = vec![abuse::Build {
            name: "this build".into(),
            bin: ctx.bin.clone(),
        }];
        if let Some(bin) = &args.baseline {
            builds.push(abuse::Build {
                name: args.baseline_name.clone(),
                bin: bin.clone(),
            });
        }
        if wanted(Scenario::HttpFlood) {
            abuse::http_flood(&mut ctx, &mut report, &builds).await?;
        }
        if wanted(Scenario::HttpAuth) {
            abuse::http_auth(&mut ctx, &mut report, &builds).await?;
        }
        if wanted(Scenario::Multilocation) {
            multiloc::multilocation(&mut ctx, &mut report).await?;
        }
        anyhow::Ok(())
    });
    if args.keep {
        eprintln!("scratch directory kept: {}", ctx.keep().display());
    }
    result?;
    report.finish(started.elapsed());
    let text = report.markdown(&ctx);
    println!("{text}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &text)?;
    eprintln!("written to {}", args.out.display());
    Ok(())
}
