//! Reading what a config names: every file bounded in size ([`read_bounded`]), secrets from a
//! file (`*_file`, systemd credentials as `%d/NAME`) or an environment variable (`*_env`), each
//! secret file read once per load however many targets share it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::error::{ConfigError, FileError};
use super::locate::{KeyPath, line_col};
use super::target::TargetCx;

/// The largest config file read: 100,000 targets take about 30 MiB. A device such as
/// `/dev/zero` ends in this error, not in the out-of-memory killer.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;
/// Password, token and client secret files.
const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// CA bundles, certificates and keys (the system bundle is about 200 KiB).
pub const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// Reads at most `limit` bytes of the file at `path`; more is an error, never an allocation
/// without end.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let classify = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => FileError::NotFound {
            dir: path
                .is_relative()
                .then(|| std::env::current_dir().ok())
                .flatten(),
        },
        std::io::ErrorKind::IsADirectory => FileError::Directory,
        _ => FileError::Io(e),
    };
    let file = std::fs::File::open(path).map_err(classify)?;
    let meta = file.metadata().ok();
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        return Err(FileError::Directory);
    }
    // Sized from the file when it says (one byte more to see its end): reading a large config
    // into a buffer that doubles as it goes held up to twice its size.
    let hint = meta.map_or(0, |m| m.len().min(limit)) as usize;
    let mut data = Vec::with_capacity(hint + 1);
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(classify)?;
    if data.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(data)
}

/// The text of a config file (`what`: "config", "web config"): at most `limit` bytes of UTF-8,
/// every failure naming the file (and for bad UTF-8, the line and column).
pub fn read_config_text(
    path: &Path,
    what: &'static str,
    limit: u64,
) -> Result<String, ConfigError> {
    let data = read_bounded(path, limit).map_err(|reason| ConfigError::Read {
        path: path.to_path_buf(),
        what,
        reason,
    })?;
    match String::from_utf8(data) {
        Ok(text) => Ok(text),
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
            let (line, column) = line_col(prefix, good);
            Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                column,
                key: String::new(),
                message: format!(
                    "not UTF-8 (byte 0x{:02X}): the file must be UTF-8 text",
                    bytes[good]
                ),
            })
        }
    }
}

/// Secret files read during one config load, by path: a fleet often shares one, and reading it
/// once per target was a fifth of the load time at 10,000 targets.
#[derive(Default)]
pub struct SecretFiles(HashMap<PathBuf, SecretString>);

impl SecretFiles {
    /// The secret in `file`, read once per load.
    fn read(&mut self, file: &Path) -> Result<String, String> {
        if let Some(s) = self.0.get(file) {
            return Ok(s.expose_secret().to_string());
        }
        let s = read_secret_file(file)?;
        self.0
            .insert(file.to_path_buf(), SecretString::from(s.clone()));
        Ok(s)
    }
}

/// Reads a password file: at most 64 KiB, one line, trailing newline removed.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = read_bounded(path, MAX_SECRET_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|b| {
            String::from_utf8(b).map_err(|_| format!("{} is not UTF-8 text", path.display()))
        })?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(trimmed.to_string())
}

/// `p` as written in the config: absolute, or relative to the config file's directory.
pub fn resolve_path(base_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// Expands the systemd credentials directory (`%d/NAME` or `${CREDENTIALS_DIRECTORY}/NAME`).
fn resolve_secret_path(base_dir: &Path, p: &str) -> Result<PathBuf, String> {
    for prefix in [
        "%d/",
        "${CREDENTIALS_DIRECTORY}/",
        "$CREDENTIALS_DIRECTORY/",
    ] {
        if let Some(name) = p.strip_prefix(prefix) {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                format!(
                    "{p:?} names a systemd credential but CREDENTIALS_DIRECTORY is not set \
                     (LoadCredential= in the unit sets it)"
                )
            })?;
            return Ok(Path::new(&dir).join(name));
        }
    }
    Ok(resolve_path(base_dir, p))
}

impl TargetCx<'_> {
    /// A secret from a file key or an environment key (at most one of them) of the table at
    /// `table`; `None` when neither is set. Files may name systemd credentials (`%d/NAME`).
    /// The caller hashes it where it belongs (see [`TargetCx::password`]).
    pub fn read_secret(
        &mut self,
        table: &KeyPath,
        (file_key, file): (&str, Option<&str>),
        (env_key, env): (&str, Option<&str>),
    ) -> Result<Option<SecretString>, ConfigError> {
        let loc = self.loc;
        let (key, value) = match (file, env) {
            (Some(_), Some(_)) => {
                return Err(loc.error(
                    &table.key(env_key),
                    format!("give either {file_key} or {env_key}, not both"),
                ));
            }
            (None, None) => return Ok(None),
            (Some(file), None) => {
                let file = resolve_secret_path(&self.load.base_dir, file)
                    .map_err(|m| loc.error(&table.key(file_key), m))?;
                (
                    file_key,
                    self.load
                        .secret_files
                        .read(&file)
                        .map_err(|m| loc.error(&table.key(file_key), m))?,
                )
            }
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => (env_key, v),
                Ok(_) => {
                    return Err(loc.error(
                        &table.key(env_key),
                        format!("environment variable {var} is empty"),
                    ));
                }
                Err(_) => {
                    return Err(loc.error(
                        &table.key(env_key),
                        format!("environment variable {var} is not set"),
                    ));
                }
            },
        };
        if value.contains(['\r', '\n', '\0']) {
            return Err(loc.error(&table.key(key), "the secret must be a single line"));
        }
        Ok(Some(SecretString::from(value)))
    }

    /// The secret from `password_file` or `password_env` (exactly one is required), hashed into
    /// the target's fingerprint.
    pub fn password(
        &mut self,
        file: Option<&str>,
        env: Option<&str>,
    ) -> Result<SecretString, ConfigError> {
        let path = self.path.clone();
        let secret = self
            .read_secret(&path, ("password_file", file), ("password_env", env))?
            .ok_or_else(|| {
                self.error(
                    "password_file",
                    "missing: give password_file (a file or systemd credential) or password_env",
                )
            })?;
        hash_secret(&secret, &mut self.fp);
        Ok(secret)
    }

    /// A key file such as an OAuth2 client assertion key, which may be a systemd credential.
    pub fn secret_path(&self, key: &KeyPath, p: &str) -> Result<PathBuf, ConfigError> {
        resolve_secret_path(&self.load.base_dir, p).map_err(|m| self.loc.error(key, m))
    }
}

/// Feeds `secret` into `hasher` (fingerprints and cache keys see secrets only hashed).
pub fn hash_secret(secret: &SecretString, hasher: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    secret.expose_secret().hash(hasher);
}
