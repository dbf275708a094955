//! CPU and memory of processes from /proc: what the benchmark charges to each program.
//!
//! CPU is `utime + stime` from `/proc/PID/stat` (all threads, including exited ones), in clock
//! ticks; a process tree adds what exited children left in `cutime + cstime`.

use std::time::Duration;

use anyhow::{Context, anyhow};

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we know of).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> anyhow::Result<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    // Field 3 (state) is a letter; map it to 0 so indices stay those of proc(5) minus 3.
    Ok(rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect())
}

/// CPU time used so far by `pid` (all its threads).
pub fn cpu(pid: u32, ticks: f64) -> anyhow::Result<Duration> {
    let f = stat_fields(pid)?;
    // proc(5): utime is field 14, stime 15; `f` starts at field 3.
    Ok(Duration::from_secs_f64((f[11] + f[12]) as f64 / ticks))
}

/// CPU time used so far by `pid` and every descendant, living or reaped.
pub fn tree_cpu(pid: u32, ticks: f64) -> anyhow::Result<Duration> {
    let f = stat_fields(pid)?;
    // utime, stime, cutime, cstime: fields 14-17.
    let mut total = (f[11] + f[12] + f[13] + f[14]) as f64;
    for child in children(pid) {
        total += tree_cpu(child, ticks)
            .map(|d| d.as_secs_f64() * ticks)
            .unwrap_or(0.0);
    }
    Ok(Duration::from_secs_f64(total / ticks))
}

/// Living children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // Field 4 is the parent pid.
        if stat_fields(p).is_ok_and(|f| f.get(1) == Some(&u64::from(pid))) {
            out.push(p);
        }
    }
    out
}

/// Resident set size now and its peak (VmRSS, VmHWM), in bytes.
pub fn rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Busy and total jiffies of the whole machine (all cores), from /proc/stat.
pub fn machine() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// A CPU reading of the whole machine, to tell how busy it was during a window.
#[derive(Clone, Copy)]
pub struct MachineMark(u64, u64);

impl MachineMark {
    /// Now.
    pub fn now() -> MachineMark {
        let (b, t) = machine();
        MachineMark(b, t)
    }

    /// Cores busy on average since `self` (0..=cores), e.g. 0.8 = 80 % of one core.
    pub fn cores_busy_since(&self, cores: f64) -> f64 {
        let now = MachineMark::now();
        let dt = (now.1 - self.1) as f64;
        if dt == 0.0 {
            0.0
        } else {
            (now.0 - self.0) as f64 / dt * cores
        }
    }
}

/// Number of online CPUs.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
