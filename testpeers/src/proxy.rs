//! A TCP proxy in front of a real server whose behaviour a test switches while it runs: pass
//! through, pass through after a delay (a slow server: the greeting comes late), or close each
//! new connection at once (a broken front end). The real server stays real; only the path
//! to it is played.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with the next connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Connect to the server and copy both ways, after waiting this long first.
    Pass(Duration),
    /// Close the connection without a byte.
    Close,
}

/// A running proxy on 127.0.0.1; stops when dropped.
pub struct Proxy {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Proxies to 127.0.0.1:`upstream`, passing through at once.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Mode::Pass(Duration::ZERO)));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let now = *m.lock().unwrap();
                tokio::spawn(async move {
                    let Mode::Pass(delay) = now else {
                        drop(client);
                        return;
                    };
                    tokio::time::sleep(delay).await;
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (mut c, mut u) = (client, server);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                });
            }
        });
        Proxy { port, mode, task }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Switches what new connections get.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
