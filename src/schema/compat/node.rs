//! Reads a JSON Schema value as the kinds of schema Confluent's diff reasons
//! about (string, number, object, enum, anyOf, ...).
//!
//! Confluent diffs the schema objects its Java loader (everit) builds, not
//! the JSON; this reproduces that loader's shape: a `type` array becomes an
//! anyOf of one schema per type, a schema with no `type` gets one from the
//! keywords it uses, and several kinds in one object (`type` with `enum`, or
//! `allOf` beside `properties`) become a conjunction of parts. Children stay
//! as JSON and are read only when the diff reaches them, so recursive
//! `$ref`s cost nothing here.

use serde_json::{Map, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub(super) enum Ty {
    String,
    Number,
    Integer,
    Boolean,
    Null,
    Object,
    Array,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "string" => Ty::String,
            "number" => Ty::Number,
            "integer" => Ty::Integer,
            "boolean" => Ty::Boolean,
            "null" => Ty::Null,
            "object" => Ty::Object,
            "array" => Ty::Array,
            _ => return None,
        })
    }

    /// Integer shares number's class so that integer → number is a widening
    /// (`TYPE_EXTENDED`), as in Confluent, not a `TYPE_CHANGED`.
    pub(super) fn class(self) -> Ty {
        if self == Ty::Integer {
            Ty::Number
        } else {
            self
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Crit {
    All,
    Any,
    One,
}

impl Crit {
    pub(super) fn keyword(self) -> &'static str {
        match self {
            Crit::All => "allOf",
            Crit::Any => "anyOf",
            Crit::One => "oneOf",
        }
    }
}

/// A place in a schema document: the JSON value, narrowed by `only` to one
/// type of a `type` array, or by `part` to one part of a conjunction. Every
/// node the diff visits is named by one, so a recursive comparison (through
/// `$ref`) can be spotted by its pair of places.
#[derive(Clone, Copy, Debug)]
pub(super) struct At<'a> {
    pub value: &'a Value,
    only: Option<Ty>,
    part: Option<&'static str>,
}

impl<'a> At<'a> {
    pub(super) fn new(value: &'a Value) -> Self {
        At { value, only: None, part: None }
    }

    pub(super) fn key(&self) -> (usize, Option<Ty>, Option<&'static str>) {
        (self.value as *const Value as usize, self.only, self.part)
    }

    /// Same JSON and same narrowing: Confluent collapses such duplicates in
    /// a combined schema before matching.
    pub(super) fn same(&self, other: &At<'_>) -> bool {
        self.only == other.only && self.part == other.part && self.value == other.value
    }
}

pub(super) enum Node<'a> {
    /// `false`: accepts nothing.
    False,
    /// `true`, `{}` or annotations only: accepts anything.
    Empty,
    Typed(Ty, &'a Map<String, Value>),
    /// `enum`, or `const` read as a one-value enum; `kw` names which.
    Enum(Vec<&'a Value>, &'static str),
    Not(At<'a>),
    /// `key` is the keyword it came from ("anyOf", or "type" for a type array).
    Combined {
        crit: Crit,
        subs: Vec<At<'a>>,
        key: &'static str,
    },
    /// What this module does not take apart (`if`/`then`/`else`, a `$ref` out
    /// of the document): equal JSON is compatible, anything else is a change.
    Opaque(&'a Value, &'static str),
    /// Several kinds in one schema object, each under the keyword it came from.
    Conj(Vec<(&'static str, At<'a>)>),
}

impl<'a> Node<'a> {
    /// The keyword a lone node is matched by against a conjunction's parts.
    pub(super) fn key(&self) -> &'static str {
        match self {
            Node::Typed(..) | Node::False | Node::Empty => "type",
            Node::Enum(..) => "enum",
            Node::Not(_) => "not",
            Node::Combined { key, .. } => key,
            Node::Opaque(_, key) => key,
            Node::Conj(_) => "allOf",
        }
    }
}

/// The document a schema sits in, for resolving its local `$ref`s.
#[derive(Clone, Copy)]
pub(super) struct Doc<'a> {
    root: &'a Value,
}

const STRING_KEYWORDS: &[&str] = &["minLength", "maxLength", "pattern", "format"];
const NUMBER_KEYWORDS: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
const OBJECT_KEYWORDS: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
    "unevaluatedProperties",
];
const ARRAY_KEYWORDS: &[&str] = &[
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedItems",
];

/// Past this many `$ref` hops in a row the chain is taken as a loop.
const MAX_REF_HOPS: usize = 32;

impl<'a> Doc<'a> {
    pub(super) fn new(root: &'a Value) -> Self {
        Doc { root }
    }

    /// The schema a `$ref` points at, for pointers into this document
    /// (`#`, `#/$defs/x`, or the same prefixed with the root `$id`).
    fn resolve_ref(&self, r: &str) -> Option<&'a Value> {
        let local = match self.root.get("$id").and_then(Value::as_str) {
            Some(id) if r.starts_with(id) && r[id.len()..].starts_with('#') => &r[id.len()..],
            _ => r,
        };
        let pointer = local.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        self.root.pointer(&percent_decode(pointer))
    }

    pub(super) fn node(&self, at: At<'a>) -> Node<'a> {
        self.node_hops(at, 0)
    }

    fn node_hops(&self, at: At<'a>, hops: usize) -> Node<'a> {
        let m = match at.value {
            Value::Bool(false) => return Node::False,
            Value::Object(m) => m,
            // `true`, and anything that is not a schema (the loader has already refused those).
            _ => return Node::Empty,
        };
        if let Some(ty) = at.only {
            return Node::Typed(ty, m);
        }
        let mut parts: Vec<(&'static str, Node<'a>)> = Vec::new();
        if let Some(r) = m.get("$ref").and_then(Value::as_str) {
            let target = if hops < MAX_REF_HOPS { self.resolve_ref(r) } else { None };
            let n = match target {
                Some(t) => self.node_hops(At::new(t), hops + 1),
                None => Node::Opaque(&m["$ref"], "$ref"),
            };
            parts.push(("$ref", n));
        }
        match (m.get("enum").and_then(Value::as_array), m.get("const")) {
            (Some(values), c) => {
                parts.push(("enum", Node::Enum(values.iter().collect(), "enum")));
                if let Some(c) = c {
                    parts.push(("const", Node::Enum(vec![c], "const")));
                }
            }
            (None, Some(c)) => parts.push(("enum", Node::Enum(vec![c], "const"))),
            (None, None) => {}
        }
        if let Some(n) = m.get("not") {
            parts.push(("not", Node::Not(At::new(n))));
        }
        for crit in [Crit::All, Crit::Any, Crit::One] {
            if let Some(subs) = m.get(crit.keyword()).and_then(Value::as_array) {
                let subs = subs.iter().map(At::new).collect();
                parts.push((crit.keyword(), Node::Combined { crit, subs, key: crit.keyword() }));
            }
        }
        if m.contains_key("if") {
            parts.push(("if", Node::Opaque(at.value, "if")));
        }
        let types: Vec<Ty> = match m.get("type") {
            Some(Value::String(s)) => Ty::parse(s).into_iter().collect(),
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter_map(Ty::parse).collect(),
            _ => sniff_types(m),
        };
        match types.len() {
            0 => {}
            1 => parts.push(("type", Node::Typed(types[0], m))),
            _ => {
                let subs = types.iter().map(|t| At { value: at.value, only: Some(*t), part: None }).collect();
                parts.push(("type", Node::Combined { crit: Crit::Any, subs, key: "type" }));
            }
        }
        if let Some(want) = at.part {
            return match parts.into_iter().find(|(k, _)| *k == want) {
                Some((_, n)) => n,
                None => Node::Empty,
            };
        }
        match parts.len() {
            0 => Node::Empty,
            1 => parts.pop().map(|(_, n)| n).unwrap_or(Node::Empty),
            _ => Node::Conj(parts.iter().map(|(k, _)| (*k, At { part: Some(*k), ..at })).collect()),
        }
    }

    /// Whether the schema at `at` accepts anything (`true`, `{}`, annotations only).
    pub(super) fn is_empty(&self, at: At<'a>) -> bool {
        matches!(self.node(at), Node::Empty)
    }

    pub(super) fn is_false(&self, at: At<'a>) -> bool {
        matches!(self.node(at), Node::False)
    }

    /// Whether the schema at `at`, or the one its `$ref` names, has a `default`.
    pub(super) fn has_default(&self, at: At<'a>) -> bool {
        let mut v = at.value;
        for _ in 0..MAX_REF_HOPS {
            if v.get("default").is_some() {
                return true;
            }
            match v.get("$ref").and_then(Value::as_str).and_then(|r| self.resolve_ref(r)) {
                Some(t) => v = t,
                None => return false,
            }
        }
        false
    }
}

/// The types a schema without `type` constrains, judged by its keywords as
/// everit does, so `{"properties": ...}` diffs as an object.
fn sniff_types(m: &Map<String, Value>) -> Vec<Ty> {
    let uses = |kws: &[&str]| kws.iter().any(|k| m.contains_key(*k));
    let mut out = Vec::new();
    if uses(STRING_KEYWORDS) {
        out.push(Ty::String);
    }
    if uses(NUMBER_KEYWORDS) {
        out.push(Ty::Number);
    }
    if uses(OBJECT_KEYWORDS) {
        out.push(Ty::Object);
    }
    if uses(ARRAY_KEYWORDS) {
        out.push(Ty::Array);
    }
    out
}

/// `$ref` pointers are URI fragments; `#/$defs/a%20b` names the key `a b`.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON-pointer-escaped path segment (`a/b` → `a~1b`).
pub(super) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
