//! The diff itself, after Confluent's `SchemaDiff` and its per-kind helpers
//! (`StringSchemaDiff`, `NumberSchemaDiff`, `EnumSchemaDiff`,
//! `CombinedSchemaDiff`, `NotSchemaDiff`; objects and arrays are in the
//! submodules).
//!
//! Departures from Confluent, where its Java schema model (everit) blurs
//! the JSON; each changes a finding's name or place, and only the first two
//! turn a refusal into an acceptance, both for changes that only widen:
//! - Several kinds in one schema object (`type` with `enum`) are compared
//!   part by part, so removing an `enum` value reports `ENUM_ARRAY_NARROWED`
//!   where everit's synthetic allOf made Confluent say
//!   `COMBINED_TYPE_SUBSCHEMAS_CHANGED`, and dropping the `enum` altogether
//!   is a compatible `PRODUCT_TYPE_NARROWED` rather than `TYPE_CHANGED`.
//! - `const` is a one-value enum, so `const` → `enum` containing it is
//!   `ENUM_ARRAY_EXTENDED`.
//! - `exclusiveMaximum` and `multipleOf` are compared correctly where
//!   Confluent's code slips (it compares a decreased exclusiveMaximum with
//!   `maximum`, and multipleOf as integers).
//! - A name newly listed in `required` without being declared in
//!   `properties` is `REQUIRED_ATTRIBUTE_ADDED`; Confluent only looks at
//!   declared properties.

use super::is_compatible_change;
use super::node::{At, Crit, Doc, Node, Ty};
use super::rule::*;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashSet;

mod array;
mod object;

/// One difference, named as in Confluent, at a `#/…` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Diff {
    pub rule: &'static str,
    pub path: String,
}

type PlaceKey = (usize, Option<Ty>, Option<&'static str>);

/// Where the diff is and what it found. `o` is the original (writer)
/// document and `u` the update (reader) document.
pub(super) struct Ctx<'a, 's> {
    o: Doc<'a>,
    u: Doc<'a>,
    path: Vec<String>,
    diffs: Vec<Diff>,
    /// Pairs being compared further up the stack; meeting one again means a
    /// recursive schema, which Confluent also takes as compatible.
    active: &'s RefCell<HashSet<(PlaceKey, PlaceKey)>>,
}

impl<'a, 's> Ctx<'a, 's> {
    /// A scratch context at the same place, for trying a comparison whose
    /// findings are kept only if it turns out compatible.
    fn sub(&self) -> Self {
        Ctx { o: self.o, u: self.u, path: self.path.clone(), diffs: Vec::new(), active: self.active }
    }

    /// As [`Ctx::sub`], with writer and reader exchanged (for `not`).
    fn swapped(&self) -> Self {
        Ctx { o: self.u, u: self.o, ..self.sub() }
    }

    fn compatible(&self) -> bool {
        self.diffs.iter().all(|d| is_compatible_change(d.rule))
    }

    fn absorb(&mut self, other: Ctx<'a, 's>) {
        self.diffs.extend(other.diffs);
    }

    fn add(&mut self, rule: &'static str) {
        let path = format!("#/{}", self.path.join("/"));
        self.diffs.push(Diff { rule, path });
    }

    fn add_at(&mut self, segment: &str, rule: &'static str) {
        self.within(segment, |ctx| ctx.add(rule));
    }

    fn within<R>(&mut self, segment: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(segment.to_owned());
        let r = f(self);
        self.path.pop();
        r
    }
}

/// Every difference from `original` (writer) to `update` (reader).
pub(super) fn diff(original: &Value, update: &Value) -> Vec<Diff> {
    let active = RefCell::new(HashSet::new());
    let mut ctx =
        Ctx { o: Doc::new(original), u: Doc::new(update), path: Vec::new(), diffs: Vec::new(), active: &active };
    compare(&mut ctx, At::new(original), At::new(update));
    ctx.diffs
}

/// Confluent's `SchemaDiff.compare`.
pub(super) fn compare<'a>(ctx: &mut Ctx<'a, '_>, o: At<'a>, u: At<'a>) {
    let key = (o.key(), u.key());
    if !ctx.active.borrow_mut().insert(key) {
        return;
    }
    let (no, nu) = (ctx.o.node(o), ctx.u.node(u));
    compare_nodes(ctx, o, &no, u, &nu);
    ctx.active.borrow_mut().remove(&key);
}

fn compare_nodes<'a>(ctx: &mut Ctx<'a, '_>, o: At<'a>, no: &Node<'a>, u: At<'a>, nu: &Node<'a>) {
    // A reader that accepts anything, or a writer that wrote nothing, cannot break.
    if matches!(no, Node::False) || matches!(nu, Node::Empty) {
        return;
    }
    let o_combined = matches!(no, Node::Combined { .. });
    let u_combined = matches!(nu, Node::Combined { .. });
    if !o_combined {
        if let Node::Combined { crit, subs, .. } = nu {
            if subs.len() == 1 {
                let mut s = ctx.sub();
                compare(&mut s, o, subs[0]);
                if s.compatible() {
                    ctx.absorb(s);
                    return;
                }
            } else if *crit != Crit::All {
                // A lone schema that became one branch of a union.
                for sub in subs {
                    let mut s = ctx.sub();
                    compare(&mut s, o, *sub);
                    if s.compatible() {
                        ctx.absorb(s);
                        ctx.add(SUM_TYPE_EXTENDED);
                        return;
                    }
                }
            }
        }
    } else if !u_combined {
        if let Node::Combined { subs, .. } = no {
            if subs.len() == 1 {
                let mut s = ctx.sub();
                compare(&mut s, subs[0], u);
                if s.compatible() {
                    ctx.absorb(s);
                    return;
                }
            }
        }
    }
    match (no, nu) {
        (Node::Conj(_), _) | (_, Node::Conj(_)) => conjunction(ctx, o, no, u, nu),
        (Node::Typed(a, ma), Node::Typed(b, mb)) if a.class() == b.class() => typed(ctx, *a, ma, *b, mb),
        (Node::Enum(a, kw), Node::Enum(b, _)) => enums(ctx, a, b, kw),
        (Node::Not(a), Node::Not(b)) => ctx.within("not", |ctx| {
            // `not` flips the direction: the reader must exclude no more than the writer did.
            let mut s = ctx.swapped();
            compare(&mut s, *b, *a);
            ctx.add(if s.compatible() { NOT_TYPE_NARROWED } else { NOT_TYPE_EXTENDED });
        }),
        (Node::Combined { .. }, Node::Combined { .. }) => combined(ctx, no, nu),
        (Node::Opaque(a, _), Node::Opaque(b, _)) if a == b => {}
        _ => ctx.add(TYPE_CHANGED),
    }
}

/// Two schemas, at least one with several kinds of constraint in one object:
/// like Confluent's allOf, but parts are paired by the keyword they came
/// from rather than by trial, so the finding names the part that changed.
fn conjunction<'a>(ctx: &mut Ctx<'a, '_>, o: At<'a>, no: &Node<'a>, u: At<'a>, nu: &Node<'a>) {
    let parts = |at: At<'a>, n: &Node<'a>| match n {
        Node::Conj(p) => p.clone(),
        other => vec![(other.key(), at)],
    };
    let (po, pu) = (parts(o, no), parts(u, nu));
    if !po.iter().any(|(k, _)| pu.iter().any(|(l, _)| k == l)) {
        ctx.add(TYPE_CHANGED);
        return;
    }
    for (k, a) in &po {
        match pu.iter().find(|(l, _)| l == k) {
            Some((_, b)) => compare(ctx, *a, *b),
            None => ctx.add(PRODUCT_TYPE_NARROWED),
        }
    }
    for (l, _) in &pu {
        if !po.iter().any(|(k, _)| k == l) {
            ctx.add(PRODUCT_TYPE_EXTENDED);
        }
    }
}

fn typed<'a>(ctx: &mut Ctx<'a, '_>, a: Ty, ma: &'a Map<String, Value>, b: Ty, mb: &'a Map<String, Value>) {
    match a.class() {
        Ty::String => string(ctx, ma, mb),
        Ty::Number => number(ctx, a, ma, b, mb),
        Ty::Object => object::compare_object(ctx, ma, mb),
        Ty::Array => array::compare_array(ctx, ma, mb),
        _ => {}
    }
}

/// Rule names for a numeric keyword: added, removed, increased, decreased.
type Bound = [&'static str; 4];

/// Compares one numeric keyword, as every `*SchemaDiff.compareAttributes` does.
fn bound(ctx: &mut Ctx<'_, '_>, o: &Map<String, Value>, u: &Map<String, Value>, kw: &str, r: Bound) {
    let num = |m: &Map<String, Value>| m.get(kw).and_then(Value::as_f64);
    let rule = match (num(o), num(u)) {
        (None, Some(_)) => r[0],
        (Some(_), None) => r[1],
        (Some(x), Some(y)) if x < y => r[2],
        (Some(x), Some(y)) if x > y => r[3],
        _ => return,
    };
    ctx.add_at(kw, rule);
}

fn string(ctx: &mut Ctx<'_, '_>, o: &Map<String, Value>, u: &Map<String, Value>) {
    bound(ctx, o, u, "maxLength", [MAX_LENGTH_ADDED, MAX_LENGTH_REMOVED, MAX_LENGTH_INCREASED, MAX_LENGTH_DECREASED]);
    bound(ctx, o, u, "minLength", [MIN_LENGTH_ADDED, MIN_LENGTH_REMOVED, MIN_LENGTH_INCREASED, MIN_LENGTH_DECREASED]);
    let rule = match (o.get("pattern"), u.get("pattern")) {
        (None, Some(_)) => PATTERN_ADDED,
        (Some(_), None) => PATTERN_REMOVED,
        (Some(a), Some(b)) if a != b => PATTERN_CHANGED,
        _ => return,
    };
    ctx.add_at("pattern", rule);
}

fn number(ctx: &mut Ctx<'_, '_>, a: Ty, o: &Map<String, Value>, b: Ty, u: &Map<String, Value>) {
    bound(ctx, o, u, "maximum", [MAXIMUM_ADDED, MAXIMUM_REMOVED, MAXIMUM_INCREASED, MAXIMUM_DECREASED]);
    bound(ctx, o, u, "minimum", [MINIMUM_ADDED, MINIMUM_REMOVED, MINIMUM_INCREASED, MINIMUM_DECREASED]);
    bound(
        ctx,
        o,
        u,
        "exclusiveMaximum",
        [EXCLUSIVE_MAXIMUM_ADDED, EXCLUSIVE_MAXIMUM_REMOVED, EXCLUSIVE_MAXIMUM_INCREASED, EXCLUSIVE_MAXIMUM_DECREASED],
    );
    bound(
        ctx,
        o,
        u,
        "exclusiveMinimum",
        [EXCLUSIVE_MINIMUM_ADDED, EXCLUSIVE_MINIMUM_REMOVED, EXCLUSIVE_MINIMUM_INCREASED, EXCLUSIVE_MINIMUM_DECREASED],
    );
    let step = |m: &Map<String, Value>| m.get("multipleOf").and_then(Value::as_f64);
    let rule = match (step(o), step(u)) {
        (None, Some(_)) => Some(MULTIPLE_OF_ADDED),
        (Some(_), None) => Some(MULTIPLE_OF_REMOVED),
        (Some(x), Some(y)) if x != y => Some(if is_multiple(y, x) {
            MULTIPLE_OF_EXPANDED
        } else if is_multiple(x, y) {
            MULTIPLE_OF_REDUCED
        } else {
            MULTIPLE_OF_CHANGED
        }),
        _ => None,
    };
    if let Some(rule) = rule {
        ctx.add_at("multipleOf", rule);
    }
    match (a, b) {
        (Ty::Integer, Ty::Number) => ctx.add(TYPE_EXTENDED),
        (Ty::Number, Ty::Integer) => ctx.add(TYPE_NARROWED),
        _ => {}
    }
}

/// Whether `x` is a whole multiple of `y` (both positive, as `multipleOf` requires).
fn is_multiple(x: f64, y: f64) -> bool {
    let r = x / y;
    r >= 1.0 && (r - r.round()).abs() < 1e-9
}

fn enums(ctx: &mut Ctx<'_, '_>, a: &[&Value], b: &[&Value], kw: &str) {
    let a_in_b = a.iter().all(|x| b.contains(x));
    let b_in_a = b.iter().all(|x| a.contains(x));
    let rule = match (a_in_b, b_in_a) {
        (true, true) => return,
        (true, false) => ENUM_ARRAY_EXTENDED,
        (false, true) => ENUM_ARRAY_NARROWED,
        (false, false) => ENUM_ARRAY_CHANGED,
    };
    ctx.add_at(kw, rule);
}

/// Confluent's `CombinedSchemaDiff`: the combinator, then a maximum matching
/// of writer branches to reader branches that can read them.
fn combined<'a>(ctx: &mut Ctx<'a, '_>, no: &Node<'a>, nu: &Node<'a>) {
    let (Node::Combined { crit: ca, subs: sa, key: ka }, Node::Combined { crit: cb, subs: sb, .. }) = (no, nu) else {
        return;
    };
    let changed = match (ca == cb, cb) {
        (true, _) => None,
        (false, Crit::Any) => Some(COMBINED_TYPE_EXTENDED),
        (false, Crit::One) if sa.len() == 1 => Some(COMBINED_TYPE_EXTENDED),
        (false, Crit::All) if sa.len() == 1 && sb.len() == 1 => Some(COMBINED_TYPE_EXTENDED),
        _ => Some(COMBINED_TYPE_CHANGED),
    };
    if let Some(rule) = changed {
        ctx.add(rule);
        if rule == COMBINED_TYPE_CHANGED {
            return;
        }
    }
    let dedupe = |subs: &[At<'a>]| {
        let mut out: Vec<At<'a>> = Vec::new();
        for s in subs {
            if !out.iter().any(|t| t.same(s)) {
                out.push(*s);
            }
        }
        out
    };
    let (sa, sb) = (dedupe(sa), dedupe(sb));
    if sa.len() != sb.len() {
        let grew = sa.len() < sb.len();
        ctx.add(match (*cb == Crit::All, grew) {
            (true, true) => PRODUCT_TYPE_EXTENDED,
            (true, false) => PRODUCT_TYPE_NARROWED,
            (false, true) => SUM_TYPE_EXTENDED,
            (false, false) => SUM_TYPE_NARROWED,
        });
    }
    // A branch made from a `type` array has no index under anyOf in the JSON.
    let segment = if *ka == "type" { "type" } else { ca.keyword() };
    let mut edges: Vec<Vec<Option<Vec<Diff>>>> = Vec::with_capacity(sa.len());
    for (i, a) in sa.iter().enumerate() {
        let row = ctx.within(segment, |ctx| {
            ctx.within(&i.to_string(), |ctx| {
                sb.iter()
                    .map(|b| {
                        let mut s = ctx.sub();
                        compare(&mut s, *a, *b);
                        s.compatible().then_some(s.diffs)
                    })
                    .collect::<Vec<_>>()
            })
        });
        edges.push(row);
    }
    let matching = max_matching(&edges, sb.len());
    for &(i, j) in &matching {
        if let Some(d) = edges[i][j].take() {
            ctx.diffs.extend(d);
        }
    }
    if matching.len() < sa.len().min(sb.len()) {
        ctx.add(COMBINED_TYPE_SUBSCHEMAS_CHANGED);
    }
}

/// Maximum bipartite matching (Kuhn's augmenting paths); unions are small.
fn max_matching<T>(edges: &[Vec<Option<T>>], right: usize) -> Vec<(usize, usize)> {
    fn augment<T>(i: usize, e: &[Vec<Option<T>>], seen: &mut [bool], owner: &mut [Option<usize>]) -> bool {
        for j in 0..seen.len() {
            if e[i][j].is_some() && !seen[j] {
                seen[j] = true;
                if owner[j].is_none_or(|k| augment(k, e, seen, owner)) {
                    owner[j] = Some(i);
                    return true;
                }
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; right];
    for i in 0..edges.len() {
        let mut seen = vec![false; right];
        augment(i, edges, &mut seen, &mut owner);
    }
    owner.iter().enumerate().filter_map(|(j, i)| i.map(|i| (i, j))).collect()
}
