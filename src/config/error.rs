//! What a refused config looks like: [`ConfigError`] (always naming the file, and where it can,
//! the line, column and key), [`ConfigWarning`], and [`FileError`] for files that cannot be read.
//! The web config reports through the same types.

use std::fmt;
use std::path::PathBuf;

/// A config that could not be loaded; the daemon refuses it (and keeps the old one on reload).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file itself could not be read. The reason is part of the message, not a `source`:
    /// `{:#}` chains would print the OS error twice.
    #[error("{}: cannot read {what}: {reason}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Which file it is, in words ("config", "web config").
        what: &'static str,
        /// Why it could not be read.
        reason: FileError,
    },
    /// The file is valid but gives this instance nothing to probe.
    #[error("{}: {message}", file.display())]
    NothingToProbe {
        /// The config file.
        file: PathBuf,
        /// Why, in words.
        message: String,
    },
    /// The file was read but something in it is wrong. Long values quoted in the message (a
    /// 5 MB string) are cut when displayed.
    #[error("{}:{line}:{column}: {}{sep}{}", file.display(), cut_key(key), cut_values(message), sep = if key.is_empty() { "" } else { ": " })]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// 1-based line of the offending key.
        line: usize,
        /// 1-based column of the offending key.
        column: usize,
        /// Dotted key path, e.g. `target[2] "imap-eu".tls` (1-based `[[target]]` index, and the
        /// target's name when it has a valid one); empty for syntax errors.
        key: String,
        /// What is wrong, in words.
        message: String,
    },
}

/// A valid config that will probably mislead: `mailprobe check` prints it (exit code still 0),
/// the daemon logs it at start and on reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line of the key (or of its table when the value is inherited).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, e.g. `target[2] "imap-eu".timeout`.
    pub key: String,
    /// What may go wrong, and what to do.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

/// Why a file could not be read, in the words an admin needs (the OS error once).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Nothing at that path; `in` names the working directory for a relative path.
    #[error("no such file{}", match dir { Some(d) => format!(" in {}", d.display()), None => String::new() })]
    NotFound {
        /// The directory a relative path was looked up in.
        dir: Option<PathBuf>,
    },
    /// A directory where a file was expected.
    #[error("is a directory, not a file")]
    Directory,
    /// More bytes than such a file may hold (`/dev/zero`, a log file named by mistake).
    #[error("larger than {}", bytes(*limit))]
    TooLarge {
        /// The most that is read.
        limit: u64,
    },
    /// Any other I/O error, as the OS words it.
    #[error("{0}")]
    Io(std::io::Error),
}

/// `limit` in KiB or MiB, for messages.
fn bytes(limit: u64) -> String {
    if limit >= 1024 * 1024 {
        format!("{} MiB", limit / (1024 * 1024))
    } else {
        format!("{} KiB", limit / 1024)
    }
}

/// Longest quoted value shown whole in an error; longer ones show their start and length.
const SHOWN_VALUE_CHARS: usize = 64;
const CUT_VALUE_CHARS: usize = 40;

/// `message` with every quoted (`"..."`) or backquoted value longer than 64 characters cut to
/// its first 40, followed by its length: a 5 MB value must not come back whole in an error.
fn cut_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open] as char;
        out.push_str(&rest[..=open]);
        let body = &rest[open + 1..];
        // The closing quote; `"` strings are Debug-escaped, so skip `\x` pairs.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quote == '"' => escaped = true,
                c if c == quote => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            rest = body;
            break;
        };
        let value = &body[..end];
        if value.chars().count() > SHOWN_VALUE_CHARS {
            out.extend(value.chars().take(CUT_VALUE_CHARS));
            out.push('…');
            out.push(quote);
            out.push_str(&format!(" ({} bytes)", value.len()));
        } else {
            out.push_str(value);
            out.push(quote);
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A key path with every segment longer than 64 characters cut to its first 40; a target's
/// name in it (a valid label: at most 128 characters, no quotes) is shown whole.
fn cut_key(key: &str) -> String {
    // `target[N] "name"` as `Locator::key_text` writes it, and nothing else.
    let named = key.find(" \"").filter(|open| {
        key[..*open]
            .strip_prefix("target[")
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    });
    let end = named.and_then(|open| Some(open + 2 + key[open + 2..].find('"')? + 1));
    let (name, key) = key.split_at(end.unwrap_or(0));
    let cut = key
        .split('.')
        .map(|seg| {
            if seg.chars().count() > SHOWN_VALUE_CHARS {
                seg.chars().take(CUT_VALUE_CHARS).chain(['…']).collect()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".");
    format!("{name}{cut}")
}
