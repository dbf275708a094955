//! Starts the demo peers the shipped `probes.toml` points at: a private Dovecot and Postfix on
//! fixed 127.0.0.1 ports with a test CA, and the password file. Runs until SIGINT or SIGTERM.
//!
//! Usage: `mailprobe-peers demo --dir DIR` (writes DIR/ca.pem, DIR/probe.pass, DIR/ready).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use mailprobe_testpeers::demo;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.as_slice() {
        [cmd, flag, dir] if cmd == "demo" && flag == "--dir" => PathBuf::from(dir),
        _ => {
            eprintln!("usage: mailprobe-peers demo --dir DIR");
            std::process::exit(2);
        }
    };
    let mut peers = demo::start(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        peers.start_https().await;
        println!("{}", peers.describe());
        std::fs::write(dir.join("ready"), peers.describe()).expect("write ready file");
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    });
    let _ = std::fs::remove_file(dir.join("ready"));
    drop(peers);
}
