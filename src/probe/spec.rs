//! What each protocol provides, so that the rest of mailprobe never names one: its spec (one
//! target's settings, ready to probe) implements [`ProtocolSpec`], and its `[[target]]` keys as
//! serde reads them implement [`SpecTable`]. Both live in the protocol's own `spec.rs`; the
//! registry (`registry.rs`) lists the protocols once.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::de::{DeserializeOwned, Visitor};
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::registry::{ProbeSpec, Protocol, Target};
use super::{Phase, PhaseError, PhaseRecorder, ProbeContext};
use crate::config::{ConfigError, Endpoint, TargetCx};
use crate::hash::Fnv64;

/// Targets already built during a load, by name (what a round trip's legs are looked up in).
pub type Targets = HashMap<String, Arc<Target>>;

/// A probe deadline that a spec fixes itself instead of the target's `timeout`: a round trip's
/// is its legs' timeouts plus its delivery timeout.
#[derive(Clone, Debug)]
pub struct OwnDeadline {
    /// The deadline of one run.
    pub deadline: Duration,
    /// The slow threshold when the target sets none.
    pub slow_default: Duration,
    /// How the deadline adds up, for an interval too short to hold it ("one whole round trip:
    /// 10s to open the mailbox + ... = 2m30s").
    pub explain: String,
}

/// One protocol's spec, as the rest of mailprobe sees it.
pub trait ProtocolSpec: fmt::Debug + Send + Sync {
    /// Its protocol.
    fn protocol(&self) -> Protocol;

    /// The endpoint it connects to, for summaries (`None` for a round trip, which has two).
    fn endpoint(&self) -> Option<&Endpoint>;

    /// Secrets that must never be echoed back in details, however a server words its errors.
    fn secrets(&self) -> Vec<&SecretString>;

    /// The phases a probe goes through when all is well, in order (`token` first when it signs
    /// in with OAuth2): series for all of them exist from the start.
    fn phases(&self) -> Vec<Phase>;

    /// The phase that sends the credentials, when the probe signs in to a server whose delay in
    /// rejecting a password the timeout must leave room for (a config warning).
    fn login_phase(&self) -> Option<Phase>;

    /// Names of the targets whose settings it signs in with (a round trip's legs).
    fn legs(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Its own deadline, when the target's `timeout` is not it.
    fn own_deadline(&self) -> Option<OwnDeadline> {
        None
    }

    /// The protocol dialogue of one probe of `target`, recording its phases in `rec`.
    fn dialogue<'a>(
        &'a self,
        target: &'a Target,
        ctx: &'a ProbeContext,
        rec: &'a mut PhaseRecorder,
    ) -> BoxFuture<'a, Result<(), PhaseError>>;
}

/// A protocol's `[[target]]` keys (besides every target's `name`, `region`, `protocol`,
/// `interval`, `timeout`, `slow_threshold`, `users`) as serde reads them: a struct with
/// `#[serde(deny_unknown_fields)]`, so a key of another protocol or a misspelt one is refused
/// where it stands in the file.
pub trait SpecTable: DeserializeOwned + Hash + Send + 'static {
    /// Whether it names other targets (a round trip its legs): then it is built after them.
    const NAMES_TARGETS: bool = false;

    /// Checks the keys and turns them into the spec: defaults, files and secrets read, every
    /// error located through `cx`; `targets` are those built so far.
    fn build(self, cx: &mut TargetCx<'_>, targets: &Targets) -> Result<ProbeSpec, ConfigError>;
}

/// A table read by serde but not built yet, whatever its protocol.
pub trait ReadTable: Send {
    /// See [`SpecTable::NAMES_TARGETS`].
    fn names_targets(&self) -> bool;
    /// Feeds the keys as written into a target's fingerprint.
    fn hash_into(&self, fp: &mut Fnv64);
    /// See [`SpecTable::build`].
    fn build(
        self: Box<Self>,
        cx: &mut TargetCx<'_>,
        targets: &Targets,
    ) -> Result<ProbeSpec, ConfigError>;
}

impl<T: SpecTable> ReadTable for T {
    fn names_targets(&self) -> bool {
        T::NAMES_TARGETS
    }
    fn hash_into(&self, fp: &mut Fnv64) {
        self.hash(fp);
    }
    fn build(
        self: Box<Self>,
        cx: &mut TargetCx<'_>,
        targets: &Targets,
    ) -> Result<ProbeSpec, ConfigError> {
        SpecTable::build(*self, cx, targets)
    }
}

/// serde's pass over one protocol's table.
type ReadFn = for<'de> fn(Spanned<DeValue<'de>>) -> Result<Box<dyn ReadTable>, toml::de::Error>;

/// How one protocol's table is read: its keys, and serde's pass over the table.
#[derive(Clone, Copy)]
pub struct SpecKind {
    keys: fn() -> &'static [&'static str],
    read: ReadFn,
}

impl SpecKind {
    /// The kind whose keys are `T`'s fields.
    pub fn of<T: SpecTable>() -> SpecKind {
        SpecKind {
            keys: field_names::<T>,
            read: read::<T>,
        }
    }

    /// The keys the protocol takes (serde's field names of its table).
    pub fn keys(&self) -> &'static [&'static str] {
        (self.keys)()
    }

    /// serde's pass over a `[[target]]` table (without the keys every target has); errors
    /// carry the table's spans in the file.
    pub fn read(&self, table: Spanned<DeValue<'_>>) -> Result<Box<dyn ReadTable>, toml::de::Error> {
        (self.read)(table)
    }
}

fn read<T: SpecTable>(table: Spanned<DeValue<'_>>) -> Result<Box<dyn ReadTable>, toml::de::Error> {
    Ok(Box::new(T::deserialize(ValueDeserializer::from(table))?))
}

/// The field names serde's derive gives `T` (what its `deny_unknown_fields` accepts): asked of
/// a deserializer that only listens to `deserialize_struct`, so no list is kept by hand.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct Listened;

impl fmt::Display for Listened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names listened to")
    }
}

impl std::error::Error for Listened {}

impl serde::de::Error for Listened {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Listened
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = Listened;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Listened> {
        Err(Listened)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Listened> {
        *self.0 = fields;
        Err(Listened)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
