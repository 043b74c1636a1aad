//! Schema compatibility, following the JSON Schema rules of the Confluent
//! Schema Registry (`io.confluent.kafka.schemaregistry.json.diff`), so that a
//! Kafka user's intuition about what is a safe change carries over.
//!
//! A check diffs an *original* (writer) schema against an *update* (reader)
//! schema and names each difference with Confluent's `Difference.Type`
//! constant. A difference is a problem unless its name is in
//! [`COMPATIBLE_CHANGES`]. Backward compatibility diffs old → new (the new
//! schema must read what the old one wrote); forward diffs new → old; full
//! does both; the transitive policies check against every earlier version
//! instead of only the one before.
//!
//! Departures from Confluent: modelbus is stricter about `default` (see
//! [`COMPATIBLE_CHANGES`]), and `rules/mod.rs` lists where it reads a schema more
//! precisely than Confluent's Java schema model; two of those accept a change
//! Confluent refuses (dropping an `enum`, widening a `const` to an `enum`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

mod explain;
mod node;
mod rules;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_breaking;

/// Confluent's `Difference.Type` names that this module can emit, as
/// constants so callers and tests match on them without typos.
pub mod rule {
    macro_rules! rule_names {
        ($($name:ident),* $(,)?) => { $(pub const $name: &str = stringify!($name);)* };
    }
    rule_names!(
        SCHEMA_ADDED,
        SCHEMA_REMOVED,
        TYPE_EXTENDED,
        TYPE_NARROWED,
        TYPE_CHANGED,
        MAX_LENGTH_ADDED,
        MAX_LENGTH_REMOVED,
        MAX_LENGTH_INCREASED,
        MAX_LENGTH_DECREASED,
        MIN_LENGTH_ADDED,
        MIN_LENGTH_REMOVED,
        MIN_LENGTH_INCREASED,
        MIN_LENGTH_DECREASED,
        PATTERN_ADDED,
        PATTERN_REMOVED,
        PATTERN_CHANGED,
        MAXIMUM_ADDED,
        MAXIMUM_REMOVED,
        MAXIMUM_INCREASED,
        MAXIMUM_DECREASED,
        MINIMUM_ADDED,
        MINIMUM_REMOVED,
        MINIMUM_INCREASED,
        MINIMUM_DECREASED,
        EXCLUSIVE_MAXIMUM_ADDED,
        EXCLUSIVE_MAXIMUM_REMOVED,
        EXCLUSIVE_MAXIMUM_INCREASED,
        EXCLUSIVE_MAXIMUM_DECREASED,
        EXCLUSIVE_MINIMUM_ADDED,
        EXCLUSIVE_MINIMUM_REMOVED,
        EXCLUSIVE_MINIMUM_INCREASED,
        EXCLUSIVE_MINIMUM_DECREASED,
        MULTIPLE_OF_ADDED,
        MULTIPLE_OF_REMOVED,
        MULTIPLE_OF_EXPANDED,
        MULTIPLE_OF_REDUCED,
        MULTIPLE_OF_CHANGED,
        REQUIRED_ATTRIBUTE_ADDED,
        REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED,
        REQUIRED_ATTRIBUTE_REMOVED,
        MAX_PROPERTIES_ADDED,
        MAX_PROPERTIES_REMOVED,
        MAX_PROPERTIES_INCREASED,
        MAX_PROPERTIES_DECREASED,
        MIN_PROPERTIES_ADDED,
        MIN_PROPERTIES_REMOVED,
        MIN_PROPERTIES_INCREASED,
        MIN_PROPERTIES_DECREASED,
        ADDITIONAL_PROPERTIES_ADDED,
        ADDITIONAL_PROPERTIES_REMOVED,
        ADDITIONAL_PROPERTIES_EXTENDED,
        ADDITIONAL_PROPERTIES_NARROWED,
        DEPENDENCY_ARRAY_ADDED,
        DEPENDENCY_ARRAY_REMOVED,
        DEPENDENCY_ARRAY_EXTENDED,
        DEPENDENCY_ARRAY_NARROWED,
        DEPENDENCY_ARRAY_CHANGED,
        DEPENDENCY_SCHEMA_ADDED,
        DEPENDENCY_SCHEMA_REMOVED,
        REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL,
        REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL,
        OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL,
        PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL,
        REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL,
        REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL,
        OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL,
        PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL,
        PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL,
        PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL,
        PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
        PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
        PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
        PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
        UNEVALUATED_PROPERTIES_ADDED,
        UNEVALUATED_PROPERTIES_REMOVED,
        UNEVALUATED_PROPERTIES_EXTENDED,
        UNEVALUATED_PROPERTIES_NARROWED,
        MAX_ITEMS_ADDED,
        MAX_ITEMS_REMOVED,
        MAX_ITEMS_INCREASED,
        MAX_ITEMS_DECREASED,
        MIN_ITEMS_ADDED,
        MIN_ITEMS_REMOVED,
        MIN_ITEMS_INCREASED,
        MIN_ITEMS_DECREASED,
        MAX_CONTAINS_ADDED,
        MAX_CONTAINS_REMOVED,
        MAX_CONTAINS_INCREASED,
        MAX_CONTAINS_DECREASED,
        MIN_CONTAINS_ADDED,
        MIN_CONTAINS_REMOVED,
        MIN_CONTAINS_INCREASED,
        MIN_CONTAINS_DECREASED,
        UNIQUE_ITEMS_ADDED,
        UNIQUE_ITEMS_REMOVED,
        ADDITIONAL_ITEMS_ADDED,
        ADDITIONAL_ITEMS_REMOVED,
        ADDITIONAL_ITEMS_EXTENDED,
        ADDITIONAL_ITEMS_NARROWED,
        UNEVALUATED_ITEMS_ADDED,
        UNEVALUATED_ITEMS_REMOVED,
        UNEVALUATED_ITEMS_EXTENDED,
        UNEVALUATED_ITEMS_NARROWED,
        ITEM_ADDED_TO_OPEN_CONTENT_MODEL,
        ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL,
        ITEM_ADDED_TO_CLOSED_CONTENT_MODEL,
        ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL,
        ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL,
        ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL,
        ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
        ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
        ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
        ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
        ENUM_ARRAY_EXTENDED,
        ENUM_ARRAY_NARROWED,
        ENUM_ARRAY_CHANGED,
        COMBINED_TYPE_EXTENDED,
        COMBINED_TYPE_CHANGED,
        PRODUCT_TYPE_EXTENDED,
        PRODUCT_TYPE_NARROWED,
        SUM_TYPE_EXTENDED,
        SUM_TYPE_NARROWED,
        COMBINED_TYPE_SUBSCHEMAS_CHANGED,
        NOT_TYPE_EXTENDED,
        NOT_TYPE_NARROWED,
    );
}

/// The differences that do not break a reader: Confluent's
/// `SchemaDiff.COMPATIBLE_CHANGES` (plus the `unevaluated*` analogues of its
/// `additional*` entries), less two entries.
///
/// Confluent accepts `REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED` and
/// `REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL`, assuming a
/// reader fills the default in. modelbus validates events as they are and
/// never applies `default`, so an event written without the field fails the
/// new schema: here both are incompatible.
pub const COMPATIBLE_CHANGES: &[&str] = &[
    rule::SCHEMA_REMOVED,
    rule::TYPE_EXTENDED,
    rule::MAX_LENGTH_INCREASED,
    rule::MAX_LENGTH_REMOVED,
    rule::MIN_LENGTH_DECREASED,
    rule::MIN_LENGTH_REMOVED,
    rule::PATTERN_REMOVED,
    rule::MAXIMUM_INCREASED,
    rule::MAXIMUM_REMOVED,
    rule::MINIMUM_DECREASED,
    rule::MINIMUM_REMOVED,
    rule::EXCLUSIVE_MAXIMUM_INCREASED,
    rule::EXCLUSIVE_MAXIMUM_REMOVED,
    rule::EXCLUSIVE_MINIMUM_DECREASED,
    rule::EXCLUSIVE_MINIMUM_REMOVED,
    rule::MULTIPLE_OF_REDUCED,
    rule::MULTIPLE_OF_REMOVED,
    rule::REQUIRED_ATTRIBUTE_REMOVED,
    rule::DEPENDENCY_ARRAY_NARROWED,
    rule::DEPENDENCY_ARRAY_REMOVED,
    rule::DEPENDENCY_SCHEMA_REMOVED,
    rule::MAX_PROPERTIES_INCREASED,
    rule::MAX_PROPERTIES_REMOVED,
    rule::MIN_PROPERTIES_DECREASED,
    rule::MIN_PROPERTIES_REMOVED,
    rule::ADDITIONAL_PROPERTIES_ADDED,
    rule::ADDITIONAL_PROPERTIES_EXTENDED,
    rule::UNEVALUATED_PROPERTIES_ADDED,
    rule::UNEVALUATED_PROPERTIES_EXTENDED,
    rule::PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL,
    rule::OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL,
    rule::PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL,
    rule::PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL,
    rule::PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    rule::PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    rule::MAX_ITEMS_INCREASED,
    rule::MAX_ITEMS_REMOVED,
    rule::MIN_ITEMS_DECREASED,
    rule::MIN_ITEMS_REMOVED,
    rule::UNIQUE_ITEMS_REMOVED,
    rule::MAX_CONTAINS_INCREASED,
    rule::MAX_CONTAINS_REMOVED,
    rule::MIN_CONTAINS_DECREASED,
    rule::MIN_CONTAINS_REMOVED,
    rule::ADDITIONAL_ITEMS_ADDED,
    rule::ADDITIONAL_ITEMS_EXTENDED,
    rule::UNEVALUATED_ITEMS_ADDED,
    rule::UNEVALUATED_ITEMS_EXTENDED,
    rule::ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL,
    rule::ITEM_ADDED_TO_CLOSED_CONTENT_MODEL,
    rule::ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL,
    rule::ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL,
    rule::ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    rule::ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    rule::ENUM_ARRAY_EXTENDED,
    rule::COMBINED_TYPE_EXTENDED,
    rule::PRODUCT_TYPE_NARROWED,
    rule::SUM_TYPE_EXTENDED,
    rule::NOT_TYPE_NARROWED,
];

/// Whether a difference named `rule` leaves the reader able to read the writer's data.
pub fn is_compatible_change(rule: &str) -> bool {
    COMPATIBLE_CHANGES.contains(&rule)
}

/// A type's compatibility policy, named as in Confluent (lower-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compatibility {
    /// The new schema reads data written with the previous one.
    #[default]
    Backward,
    /// The previous schema reads data written with the new one.
    Forward,
    /// Both backward and forward.
    Full,
    /// No check.
    None,
    BackwardTransitive,
    ForwardTransitive,
    FullTransitive,
}

impl Compatibility {
    pub const ALL: [Compatibility; 7] = [
        Self::Backward,
        Self::Forward,
        Self::Full,
        Self::None,
        Self::BackwardTransitive,
        Self::ForwardTransitive,
        Self::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "backward",
            Self::Forward => "forward",
            Self::Full => "full",
            Self::None => "none",
            Self::BackwardTransitive => "backward_transitive",
            Self::ForwardTransitive => "forward_transitive",
            Self::FullTransitive => "full_transitive",
        }
    }

    fn backward(self) -> bool {
        matches!(self, Self::Backward | Self::Full | Self::BackwardTransitive | Self::FullTransitive)
    }

    fn forward(self) -> bool {
        matches!(self, Self::Forward | Self::Full | Self::ForwardTransitive | Self::FullTransitive)
    }

    fn transitive(self) -> bool {
        matches!(self, Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive)
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts the snake-case names, and Confluent's spelling (`BACKWARD_TRANSITIVE`)
/// so a policy copied from a Kafka subject config works as is.
impl FromStr for Compatibility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL.into_iter().find(|c| c.as_str() == norm).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
            format!("unknown compatibility {s:?}; expected one of {}", names.join(", "))
        })
    }
}

/// One reason a new schema breaks the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incompatibility {
    /// Confluent's `Difference.Type` name, e.g. `PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL`.
    pub rule: &'static str,
    /// Where, as Confluent writes it: `#/properties/amount`. For a forward
    /// check the path is in the new schema (the writer's), as in Confluent.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.rule, self.path, self.message)
    }
}

/// Checks `new` against `previous` (oldest first) under `policy`; empty means compatible.
pub fn check(policy: Compatibility, previous: &[&Value], new: &Value) -> Vec<Incompatibility> {
    let n = previous.len();
    let labelled: Vec<(String, &Value)> =
        previous.iter().enumerate().map(|(i, v)| (format!("previous schema {} of {n}", i + 1), *v)).collect();
    check_labelled(policy, &labelled, new)
}

/// [`check`] with a name for each previous schema, used in messages
/// (the registry passes `version 3`).
pub(crate) fn check_labelled(
    policy: Compatibility,
    previous: &[(String, &Value)],
    new: &Value,
) -> Vec<Incompatibility> {
    if policy == Compatibility::None {
        return Vec::new();
    }
    let against = if policy.transitive() { previous } else { &previous[previous.len().saturating_sub(1)..] };
    let mut out = Vec::new();
    for (label, old) in against {
        if policy.backward() {
            let context = format!("backward: the new schema cannot read data written with {label}");
            report(&mut out, rules::diff(old, new), &context);
        }
        if policy.forward() {
            let context = format!("forward: {label} cannot read data written with the new schema");
            report(&mut out, rules::diff(new, old), &context);
        }
    }
    out
}

fn report(out: &mut Vec<Incompatibility>, diffs: Vec<rules::Diff>, context: &str) {
    for d in diffs.into_iter().filter(|d| !is_compatible_change(d.rule)) {
        let message = format!("{context}: {}", explain::explain(d.rule));
        out.push(Incompatibility { rule: d.rule, path: d.path, message });
    }
}

/// Every difference Confluent's diff would name, compatible or not, from
/// the writer schema `original` to the reader schema `update`. For
/// diagnostics (`schema check --verbose`) and tests.
pub fn differences(original: &Value, update: &Value) -> Vec<(&'static str, String)> {
    rules::diff(original, update).into_iter().map(|d| (d.rule, d.path)).collect()
}
