//! The context a protocol's spec reads its `[[target]]` table with: where the table is (so that
//! every error names file, line and key), what one load shares between targets (files already
//! read, TLS roots, `[global]`'s network settings) and the fingerprint the target's settings go
//! into.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::hash::Fnv64;
use crate::tls::RootsCache;

use super::endpoint::{CaFile, NetSettings};
use super::error::ConfigError;
use super::locate::{KeyPath, Locator};
use super::secrets::{SecretFiles, read_bounded, resolve_path};

/// What one load of the config shares between its targets.
pub struct LoadState {
    /// Where relative paths start: the config file's directory.
    pub(super) base_dir: PathBuf,
    /// TLS roots built so far (the system's, and each CA file's).
    pub(super) roots: RootsCache,
    /// Secret files read so far.
    pub(super) secret_files: SecretFiles,
    /// CA files read so far, with their hashes.
    pub(super) ca_files: HashMap<PathBuf, CaFile>,
    /// `[global]`'s network settings, the default of every target.
    pub net: NetSettings,
}

impl LoadState {
    /// The state of a load of `config_file`.
    pub fn new(config_file: &Path) -> Self {
        let base_dir = config_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        LoadState {
            base_dir,
            roots: RootsCache::default(),
            secret_files: SecretFiles::default(),
            ca_files: HashMap::new(),
            net: NetSettings::default(),
        }
    }

    /// `p` as written in the config: absolute, or relative to the config file's directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        resolve_path(&self.base_dir, p)
    }
}

/// One `[[target]]` table being read into its protocol's spec.
pub struct TargetCx<'a> {
    /// Locates errors in the file.
    pub loc: &'a Locator<'a>,
    /// The table: `target[i]`.
    pub path: KeyPath,
    pub(super) load: &'a mut LoadState,
    /// Everything that defines the target (secrets and files by hash, never in clear): equal
    /// fingerprints mean a reload left it unchanged.
    pub fp: Fnv64,
}

impl<'a> TargetCx<'a> {
    /// A context for the table at `path`; `fp` already holds the table's keys.
    pub fn new(loc: &'a Locator<'a>, path: KeyPath, load: &'a mut LoadState, fp: Fnv64) -> Self {
        TargetCx {
            loc,
            path,
            load,
            fp,
        }
    }

    /// The path of `key` in this table.
    pub fn key(&self, key: &str) -> KeyPath {
        self.path.key(key)
    }

    /// An error about `key` of this table, located at it (or at the table when it is missing).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        self.loc.error(&self.path.key(key), message)
    }

    /// Whether the table has `key`, whatever its value.
    pub fn given(&self, key: &str) -> bool {
        self.loc.keys_of(&self.path).iter().any(|(k, _)| k == key)
    }

    /// Refuses each of `keys` the table has, with `message`: a setting that would do nothing.
    pub fn refuse_given(&self, keys: &[&str], message: &str) -> Result<(), ConfigError> {
        match keys.iter().find(|k| self.given(k)) {
            Some(k) => Err(self.error(k, message)),
            None => Ok(()),
        }
    }

    /// `p` as written in the config: absolute, or relative to the config file's directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        self.load.resolve_path(p)
    }

    /// The file `p` named by `key`, at most `limit` bytes.
    pub fn read_file(&self, key: &str, p: &str, limit: u64) -> Result<Vec<u8>, ConfigError> {
        let file = self.resolve_path(p);
        read_bounded(&file, limit)
            .map_err(|e| self.error(key, format!("cannot read {}: {e}", file.display())))
    }
}
