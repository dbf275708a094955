//! A small SMTP receiver on 127.0.0.1 (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA with dot-stuffing,
//! RSET, NOOP, QUIT; no extensions, so a client sends one command at a time), handing each
//! accepted message to a callback: how mail reaches a peer that plays a mail service of its own
//! (the Graph peer's mailboxes), relayed to it by the real Postfix.
//!
//! Every read is bounded: lines at 4096 bytes, a message at [`MAX_MESSAGE`], each read at 30 s.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The largest message accepted (larger: 552).
pub const MAX_MESSAGE: usize = 1024 * 1024;
const MAX_LINE: usize = 4096;
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a recipient is accepted (RCPT TO).
pub type Accepts = Arc<dyn Fn(&str) -> bool + Send + Sync>;
/// What happens to an accepted message: envelope recipients and the message as sent.
pub type Deliver = Arc<dyn Fn(&[String], &str) + Send + Sync>;

/// A running receiver; stops when dropped.
pub struct SmtpSink {
    /// Its port on 127.0.0.1.
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Listens on 127.0.0.1 (port 0), greeting as `name`.
    pub async fn start(name: &'static str, accepts: Accepts, deliver: Deliver) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind smtp sink");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (accepts, deliver) = (accepts.clone(), deliver.clone());
                tokio::spawn(async move {
                    if let Err(e) = session(tcp, name, &accepts, &deliver).await {
                        eprintln!("smtp sink: {e}");
                    }
                });
            }
        });
        SmtpSink { port, task }
    }
}

/// Reads one line (CRLF or LF), at most [`MAX_LINE`] bytes; `None` at EOF.
async fn line(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        READ_TIMEOUT,
        (&mut *r).take(MAX_LINE as u64).read_until(b'\n', &mut buf),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client silent"))??;
    if read == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err(std::io::Error::other("line too long"));
    }
    let s = String::from_utf8_lossy(&buf);
    Ok(Some(s.trim_end_matches(['\r', '\n']).to_string()))
}

/// The address inside `<...>` after `prefix` (case-insensitive), parameters ignored.
fn path(cmd: &str, prefix: &str) -> Option<String> {
    let rest = cmd
        .get(..prefix.len())?
        .eq_ignore_ascii_case(prefix)
        .then(|| &cmd[prefix.len()..])?;
    let rest = rest.trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_string())
}

async fn session(
    tcp: TcpStream,
    name: &str,
    accepts: &Accepts,
    deliver: &Deliver,
) -> std::io::Result<()> {
    let mut r = BufReader::new(tcp);
    r.get_mut()
        .write_all(format!("220 {name} ESMTP mailprobe test sink\r\n").as_bytes())
        .await?;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    while let Some(cmd) = line(&mut r).await? {
        let verb = cmd
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" | "HELO" => {
                from = None;
                rcpts.clear();
                format!("250 {name}\r\n")
            }
            "MAIL" => match path(&cmd, "MAIL FROM:") {
                Some(f) => {
                    from = Some(f);
                    rcpts.clear();
                    "250 2.1.0 Ok\r\n".to_string()
                }
                None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".to_string(),
            },
            "RCPT" => match (&from, path(&cmd, "RCPT TO:")) {
                (None, _) => "503 5.5.1 Error: need MAIL command\r\n".to_string(),
                (Some(_), None) => "501 5.5.4 Syntax: RCPT TO:<address>\r\n".to_string(),
                (Some(_), Some(to)) if accepts(&to) => {
                    rcpts.push(to);
                    "250 2.1.5 Ok\r\n".to_string()
                }
                (Some(_), Some(_)) => "550 5.1.1 Recipient address rejected\r\n".to_string(),
            },
            "DATA" if rcpts.is_empty() => "503 5.5.1 Error: need RCPT command\r\n".to_string(),
            "DATA" => {
                r.get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                let mut too_big = false;
                loop {
                    let Some(l) = line(&mut r).await? else {
                        return Ok(());
                    };
                    if l == "." {
                        break;
                    }
                    let l = l.strip_prefix('.').unwrap_or(&l);
                    if data.len() + l.len() + 2 > MAX_MESSAGE {
                        too_big = true;
                        continue;
                    }
                    data.push_str(l);
                    data.push_str("\r\n");
                }
                if too_big {
                    "552 5.3.4 Message too big\r\n".to_string()
                } else {
                    deliver(&rcpts, &data);
                    from = None;
                    rcpts.clear();
                    "250 2.0.0 Ok: queued\r\n".to_string()
                }
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                "250 2.0.0 Ok\r\n".to_string()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".to_string(),
            "QUIT" => {
                r.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Error: command not recognized\r\n".to_string(),
        };
        r.get_mut().write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

/// The header fields of `message` (unfolded), in order, and its body.
pub fn split_message(message: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = message
        .split_once("\r\n\r\n")
        .or_else(|| message.split_once("\n\n"))
        .unwrap_or((message, ""));
    let mut fields: Vec<(String, String)> = Vec::new();
    for l in head.lines() {
        if l.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(l.trim());
            }
        } else if let Some((n, v)) = l.split_once(':') {
            fields.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    (fields, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_fields() {
        assert_eq!(
            path("MAIL FROM:<a@b.test> SIZE=10", "MAIL FROM:"),
            Some("a@b.test".into())
        );
        assert_eq!(
            path("rcpt to: <c@d.test>", "RCPT TO:"),
            Some("c@d.test".into())
        );
        assert_eq!(path("RCPT TO:c@d.test", "RCPT TO:"), None);
        let (f, body) = split_message("Subject: a\r\n b\r\nX-A: 1\r\n\r\nhi\r\n");
        assert_eq!(
            f,
            vec![("Subject".into(), "a b".into()), ("X-A".into(), "1".into())]
        );
        assert_eq!(body, "hi\r\n");
    }
}
