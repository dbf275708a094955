//! A private dnsmasq on 127.0.0.1, answering only for the names a test gives it.
//!
//! It reads no config file, no `/etc/hosts` and no `/etc/resolv.conf` (so it never forwards a
//! query anywhere), writes its pid file and log into its own temporary directory, and stays in
//! the foreground as the test's child: no system service is started or touched. Every other
//! name under [`DOMAIN`] is NXDOMAIN; names elsewhere are REFUSED. Besides address records it
//! serves MX records and null MX records ([`Zone`]), for the MX probe.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{free_port, require_program, short_tempdir};

/// The domain the server is authoritative for (nothing under it exists unless a test says so).
pub const DOMAIN: &str = "mailprobe.test";

/// A running dnsmasq; killed when dropped.
pub struct Dnsmasq {
    /// Where it answers, over UDP and TCP.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// What a [`Dnsmasq`] serves: address records, MX records and null MX records.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    /// `(name, address)`: one A or AAAA record each (a name may appear several times).
    pub hosts: Vec<(String, IpAddr)>,
    /// `(domain, exchange, preference)`: one MX record each.
    pub mx: Vec<(String, String, u16)>,
    /// Domains with a null MX (RFC 7505: a single MX `0 .`).
    pub null_mx: Vec<String>,
}

impl Zone {
    /// An A or AAAA record.
    pub fn host(mut self, name: &str, ip: IpAddr) -> Zone {
        self.hosts.push((name.into(), ip));
        self
    }

    /// An MX record of `domain` pointing at `exchange`.
    pub fn mx(mut self, domain: &str, exchange: &str, preference: u16) -> Zone {
        self.mx.push((domain.into(), exchange.into(), preference));
        self
    }

    /// A null MX for `domain`.
    pub fn null_mx(mut self, domain: &str) -> Zone {
        self.null_mx.push(domain.into());
        self
    }

    /// dnsmasq's options serving the zone.
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (name, ip) in &self.hosts {
            args.push(format!("--host-record={name},{ip}"));
        }
        for (domain, exchange, preference) in &self.mx {
            args.push(format!("--mx-host={domain},{exchange},{preference}"));
        }
        // dnsmasq's --mx-host cannot name the root; the raw record (RFC 1035 3.3.9: preference
        // 0, then the root name, one zero octet) can.
        for domain in &self.null_mx {
            args.push(format!("--dns-rr={domain},15,00:00:00"));
        }
        args
    }
}

impl Dnsmasq {
    /// Starts dnsmasq with one A or AAAA record per `(name, address)` (a name may appear
    /// several times); returns once it has answered a query.
    pub fn start(records: &[(&str, IpAddr)]) -> Dnsmasq {
        let zone = records
            .iter()
            .fold(Zone::default(), |z, (name, ip)| z.host(name, *ip));
        Self::serve(&zone)
    }

    /// Starts dnsmasq serving `zone`; returns once it has answered a query.
    pub fn serve(zone: &Zone) -> Dnsmasq {
        let program = require_program("dnsmasq", "dnsmasq-base");
        let dir = short_tempdir("mpdns-");
        let log = dir.path().join("dnsmasq.log");
        let mut last = String::new();
        // The port was free for TCP a moment ago; UDP, or a race with another test, may still
        // take it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut cmd = Command::new(&program);
            cmd.args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--conf-file=/dev/null",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--log-facility=-",
                "--log-queries",
                "--cache-size=0",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--local=/{DOMAIN}/"))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ));
            cmd.args(zone.args());
            let stderr = std::fs::File::create(&log).expect("dnsmasq log file");
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("cannot start dnsmasq");
            match wait_ready(&mut child, addr) {
                Ok(()) => {
                    return Dnsmasq {
                        addr,
                        child,
                        log,
                        _dir: dir,
                    };
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
        }
        panic!("dnsmasq did not start: {last}");
    }

    /// What dnsmasq logged (its queries and answers), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Asks for the SOA of [`DOMAIN`] until an answer with our id comes back.
fn wait_ready(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let query = soa_query(0x4d50);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("dnsmasq exited ({status})"));
        }
        socket.send_to(&query, addr).map_err(|e| e.to_string())?;
        // A refused port (not up yet) shows as an error on the next receive.
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && n >= 2
            && buf[..2] == query[..2]
        {
            return Ok(());
        }
    }
    Err("dnsmasq did not answer within 10 s".into())
}

/// A DNS query (RFC 1035 4.1) for the SOA record of [`DOMAIN`].
fn soa_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(40);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in DOMAIN.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 6, 0, 1]);
    q
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
