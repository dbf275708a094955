//! Where in the file an error is: key paths such as `target[2].tls`, and the [`Locator`] that
//! maps a key path or a byte span of the parsed document back to `file:line:column`. Unknown keys
//! get the closest known key as a suggestion.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::error::ConfigError;

/// One step of a key path.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    /// 0-based array index, shown 1-based.
    Index(usize),
}

/// A dotted key path into the config, e.g. `target[2].oauth2.tenant` (shown 1-based).
#[derive(Clone, Debug, Default)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// `target[i + 1]`: the `[[target]]` table at 0-based index `i`.
    pub fn target(i: usize) -> Self {
        KeyPath(vec![Seg::Key("target".into()), Seg::Index(i)])
    }

    /// A top-level table such as `global` or `incidents`.
    pub fn table(name: &str) -> Self {
        KeyPath(vec![Seg::Key(name.into())])
    }

    /// The key `k` inside this path's table.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// Item `i` (0-based) of this path's array.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{}]", n + 1)?,
            }
        }
        Ok(())
    }
}

/// Maps key paths and byte spans of one file back to lines and columns.
pub struct Locator<'a> {
    /// The file the text came from.
    pub file: &'a Path,
    text: &'a str,
    doc: &'a DeTable<'a>,
}

impl<'a> Locator<'a> {
    /// A locator for `text`, read from `file` and parsed into `doc`.
    pub fn new(file: &'a Path, text: &'a str, doc: &'a DeTable<'a>) -> Self {
        Locator { file, text, doc }
    }

    /// A TOML syntax error, at its position.
    pub fn syntax(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
        let (line, column) = line_col(text, e.span().map(|s| s.start).unwrap_or(0));
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            column,
            key: String::new(),
            message: e.message().trim().to_string(),
        }
    }

    fn at_offset(&self, offset: usize, key: String, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, offset);
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }

    /// An error about the key at `path`, located at that key (or its nearest existing parent).
    pub fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let offset = self.find(path).map(|s| s.start).unwrap_or(0);
        self.at_offset(offset, self.key_text(path), message.into())
    }

    /// `path` as errors and warnings show it: a target by its index and, when it has a valid
    /// one, its name (`target[3] "imap-eu".tls`), so it is found by either.
    pub fn key_text(&self, path: &KeyPath) -> String {
        let text = path.to_string();
        if let [Seg::Key(k), Seg::Index(i), ..] = path.0.as_slice()
            && k == "target"
            && let Some(name) = self.target_name(*i)
        {
            let head = format!("target[{}]", i + 1);
            return format!("{head} \"{name}\"{}", &text[head.len()..]);
        }
        text
    }

    /// The name of the `i`-th `[[target]]` (0-based), if it is a valid one.
    fn target_name(&self, i: usize) -> Option<&str> {
        let (_, targets) = self.doc.iter().find(|(k, _)| k.get_ref() == "target")?;
        let DeValue::Array(targets) = targets.get_ref() else {
            return None;
        };
        let DeValue::Table(target) = targets.get(i)?.get_ref() else {
            return None;
        };
        let (_, name) = target.iter().find(|(k, _)| k.get_ref() == "name")?;
        match name.get_ref() {
            DeValue::String(name) if super::common::check_label(name).is_ok() => Some(name),
            _ => None,
        }
    }

    /// Line and column of the key at `path` (or of its nearest existing parent).
    pub fn position(&self, path: &KeyPath) -> (usize, usize) {
        line_col(self.text, self.find(path).map(|s| s.start).unwrap_or(0))
    }

    /// The span of the last segment of `path` that exists in the document.
    fn find(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut table = self.doc;
        let mut value: Option<&DeValue<'_>> = None;
        let mut best = None;
        for seg in &path.0 {
            match (seg, value) {
                (Seg::Key(k), None) | (Seg::Key(k), Some(DeValue::Table(_))) => {
                    if let Some(DeValue::Table(t)) = value {
                        table = t;
                    }
                    // A missing key (say, a required one) is located at its table.
                    let Some((key, v)) = table.iter().find(|(key, _)| key.get_ref() == k) else {
                        return best;
                    };
                    best = Some(key.span());
                    value = Some(v.get_ref());
                }
                (Seg::Index(i), Some(DeValue::Array(a))) => {
                    let Some(item) = a.get(*i) else {
                        return best;
                    };
                    best = Some(item.span());
                    value = Some(item.get_ref());
                }
                _ => return best,
            }
        }
        best
    }

    /// The key path whose key or value contains byte `offset`, deepest first.
    fn path_at(&self, offset: usize) -> KeyPath {
        fn walk(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
            for (k, v) in table.iter() {
                path.push(Seg::Key(k.get_ref().to_string()));
                // Deepest match first: an array's span is also its first item's header.
                if walk_value(v.get_ref(), offset, path)
                    || k.span().contains(&offset)
                    || v.span().contains(&offset)
                {
                    return true;
                }
                path.pop();
            }
            false
        }
        fn walk_value(v: &DeValue<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
            match v {
                DeValue::Table(t) => walk(t, offset, path),
                DeValue::Array(a) => {
                    for (i, item) in a.iter().enumerate() {
                        path.push(Seg::Index(i));
                        if walk_value(item.get_ref(), offset, path) || item.span().contains(&offset)
                        {
                            return true;
                        }
                        path.pop();
                    }
                    false
                }
                _ => false,
            }
        }
        let mut path = Vec::new();
        walk(self.doc, offset, &mut path);
        KeyPath(path)
    }

    /// The key path serde's error `e` is about, located at its span: serde names the offending
    /// key only in the message of a missing or unknown field.
    pub fn serde_path(&self, e: &toml::de::Error) -> KeyPath {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let mut path = self.path_at(offset);
        for prefix in ["missing field `", "unknown field `"] {
            if let Some(rest) = e.message().trim().strip_prefix(prefix)
                && let Some(name) = rest.split('`').next()
                && !matches!(path.0.last(), Some(Seg::Key(k)) if k == name)
            {
                path.0.push(Seg::Key(name.to_string()));
            }
        }
        path
    }

    /// serde's error `e`, located; an unknown key is said as [`unknown_key`] says it, with
    /// serde's list of the table's keys.
    pub fn serde_error(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let path = self.serde_path(e);
        self.at_offset(
            offset,
            self.key_text(&path),
            unknown_key_message(e.message().trim()),
        )
    }

    /// Keys present in the table at `path`, with their spans.
    pub fn keys_of(&self, path: &KeyPath) -> Vec<(String, Range<usize>)> {
        let mut value: Option<&DeValue<'_>> = None;
        let mut table = self.doc;
        for seg in &path.0 {
            match (seg, value) {
                (Seg::Key(k), None) | (Seg::Key(k), Some(DeValue::Table(_))) => {
                    if let Some(DeValue::Table(t)) = value {
                        table = t;
                    }
                    match table.iter().find(|(key, _)| key.get_ref() == k) {
                        Some((_, v)) => value = Some(v.get_ref()),
                        None => return Vec::new(),
                    }
                }
                (Seg::Index(i), Some(DeValue::Array(a))) => match a.get(*i) {
                    Some(item) => value = Some(item.get_ref()),
                    None => return Vec::new(),
                },
                _ => return Vec::new(),
            }
        }
        match value {
            Some(DeValue::Table(t)) => {
                let mut keys: Vec<_> = t
                    .iter()
                    .map(|(k, _)| (k.get_ref().to_string(), k.span()))
                    .collect();
                keys.sort_by_key(|(_, span)| span.start);
                keys
            }
            _ => Vec::new(),
        }
    }
}

/// serde's "unknown field `x`, expected one of ..." (every field of the table) as
/// [`unknown_key`] words it. Other messages pass unchanged.
fn unknown_key_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((name, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    // The expected names are the backquoted words after "expected".
    let known: Vec<&str> = expected
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    unknown_key(name, &known)
}

/// "unknown key; did you mean `y`?" when a key of `known` (the table's keys) is close to
/// `name`, else a short list or a pointer to the README: a target has some 20 keys.
pub fn unknown_key(name: &str, known: &[&str]) -> String {
    let name = name.to_lowercase();
    let len = name.chars().count();
    let closest = known
        .iter()
        .filter_map(|k| {
            let allowed = (k.chars().count() / 3).max(1);
            // Lengths further apart than that cannot be close (and a 5 MB key costs nothing).
            if len.abs_diff(k.chars().count()) > allowed {
                return None;
            }
            let d = edit_distance(&name, k);
            (d <= allowed).then_some((d, *k))
        })
        .min_by_key(|(d, _)| *d);
    match closest {
        Some((_, k)) => format!("unknown key; did you mean `{k}`?"),
        None if known.is_empty() => "unknown key; this table takes none".to_string(),
        None if known.len() <= 12 => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!("unknown key; expected one of {}", list.join(", "))
        }
        None => "unknown key; no key of this table is close to it (see the configuration \
                 reference in the README)"
            .to_string(),
    }
}

/// Optimal string alignment distance: edits (insert, delete, substitute, swap two neighbours)
/// from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\n", 0), (1, 1));
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
    }
}
