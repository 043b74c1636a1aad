//! Sections whose `kind` selects a backend: the bus, each feature store,
//! each sink. Each backend's settings are its own struct in its own folder
//! (`bus/kafka/config.rs`), and a section's enum has one variant per
//! backend, declared with [`backends!`]: adding a backend adds one line there.
//!
//! Why not serde's internally tagged enums: they buffer the table, so
//! `serde_path_to_error` cannot see inside it and an unknown key would be
//! reported at `bus` instead of `bus.kafka.brokerz`, which breaks the loader's
//! all-errors-at-once collection (it removes the offending key and tries
//! again). So a section is read as a plain table, `kind` first, and the
//! chosen struct is deserialised from its part with its own path tracking;
//! an error carries that inner path ([`Nested`]), which the loader joins to
//! the section's path.

use serde::de::{self, DeserializeOwned};

/// Separates the inner path from the message in an error raised inside a
/// section (see [`Nested::into_de`]); the loader splits on it. A control
/// character, so no message or key of a valid file contains it.
const MARK: char = '\u{1e}';

/// An error inside a section: where in it, and what.
#[derive(Debug)]
pub(crate) struct Nested {
    pub path: String,
    pub message: String,
}

impl Nested {
    /// The error as the outer deserializer's, carrying its inner path `at.path`.
    pub(crate) fn into_de<E: de::Error>(self, at: &str) -> E {
        E::custom(format_args!("{MARK}{}{MARK}{}", join(at, &self.path), self.message))
    }

    /// The unknown key this error is about, when it is one at the top of the section.
    fn unknown_key(&self) -> Option<&str> {
        let key = self.message.strip_prefix("unknown field `")?.split('`').next()?;
        (self.path == key).then_some(key)
    }
}

/// Splits a message made by [`Nested::into_de`] into its inner path and message.
pub(super) fn split(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix(MARK)?;
    rest.split_once(MARK)
}

/// `outer.inner`, or `outer[0]` for an inner path that starts with an index.
pub(super) fn join(outer: &str, inner: &str) -> String {
    match (outer.is_empty(), inner.is_empty()) {
        (_, true) => outer.to_string(),
        (true, false) => inner.to_string(),
        _ if inner.starts_with('[') => format!("{outer}{inner}"),
        _ => format!("{outer}.{inner}"),
    }
}

/// Deserialises `value` as `T`, tracking the path of an error inside it.
pub(crate) fn parse<T: DeserializeOwned>(value: toml::Value) -> Result<T, Nested> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        Nested { path, message: e.into_inner().to_string() }
    })
}

/// Removes `kind` from a section's table: `default` when it is absent.
pub(crate) fn take_kind<E: de::Error>(
    table: &mut toml::Table,
    default: &'static str,
    kinds: &[&'static str],
) -> Result<String, E> {
    match table.remove("kind") {
        None => Ok(default.to_string()),
        Some(toml::Value::String(k)) if kinds.contains(&k.as_str()) => Ok(k),
        Some(v) => {
            let got = match v {
                toml::Value::String(k) => format!("`{k}`"),
                other => format!("a {}", other.type_str()),
            };
            let message = format!("unknown kind {got}; known kinds: {}", kinds.join(", "));
            Err(Nested { path: "kind".into(), message }.into_de(""))
        }
    }
}

/// The keys a struct accepts, as its derived `Deserialize` declares them:
/// for saying which backend an unknown key belongs to.
pub(crate) fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields found")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

/// Rewrites an unknown-key error of backend `kind` to list the keys it
/// does accept (its own and the `common` ones of the table it sits in,
/// `kind` among them where it is there) and, when the key belongs to
/// another backend, to say which.
pub(crate) fn explain_unknown_key(
    mut e: Nested,
    kind: &str,
    own: &[&str],
    common: &[&str],
    others: &[(&'static str, &'static [&'static str])],
) -> Nested {
    let Some(key) = e.unknown_key().map(str::to_string) else { return e };
    let mut known: Vec<&str> = common.iter().chain(own).copied().collect();
    known.sort_unstable();
    let mut message = format!("unknown key `{key}` for kind `{kind}`; known keys: {}", known.join(", "));
    let owners: Vec<&str> =
        others.iter().filter(|(k, keys)| *k != kind && keys.contains(&key.as_str())).map(|(k, _)| *k).collect();
    if !owners.is_empty() {
        message.push_str(&format!(" (`{key}` is a key of kind `{}`)", owners.join("`, `")));
    }
    e.message = message;
    e
}

/// Declares a section's enum of backends, one line per backend:
/// `Variant(SettingsStruct) = "kind"`. It gives the enum `KINDS`, `kind()`,
/// and `from_kind`, which deserialises the chosen backend's settings.
macro_rules! backends {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($settings:ty) = $kind:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($settings), )+
        }

        impl $name {
            /// Every `kind` this section accepts.
            pub const KINDS: &'static [&'static str] = &[$($kind),+];

            /// The `kind` this backend is selected by.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $name::$variant(_) => $kind, )+
                }
            }

            /// The backend `kind` names, from its settings; `common` are the
            /// section's keys besides `kind` that every backend shares.
            fn from_kind(kind: &str, settings: toml::Value, common: &[&str]) -> Result<Self, $crate::config::sealed::Nested> {
                use $crate::config::sealed::{explain_unknown_key, keys_of, parse};
                let others = || [$( ($kind, keys_of::<$settings>()), )+];
                match kind {
                    $( $kind => parse(settings)
                        .map($name::$variant)
                        .map_err(|e| explain_unknown_key(e, kind, keys_of::<$settings>(), common, &others())), )+
                    other => Err($crate::config::sealed::Nested {
                        path: "kind".into(),
                        message: format!("unknown kind `{other}`; known kinds: {}", Self::KINDS.join(", ")),
                    }),
                }
            }
        }
    };
}
pub(crate) use backends;
