//! Objects, after Confluent's `ObjectSchemaDiff` (8.x), where whether a
//! property may come or go depends on the content model: open (anything
//! undeclared is allowed), closed (`additionalProperties: false`), or
//! partially open (undeclared names must match `patternProperties` or the
//! `additionalProperties` schema).

use super::{bound, compare, Ctx};
use crate::schema::compat::node::{escape, At, Doc};
use crate::schema::compat::rule::*;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

type Obj = Map<String, Value>;

pub(super) fn compare_object<'a>(ctx: &mut Ctx<'a, '_>, o: &'a Obj, u: &'a Obj) {
    required(ctx, o, u);
    properties(ctx, o, u);
    dependencies(ctx, o, u);
    additional(ctx, o, u);
    unevaluated(ctx, o, u);
    bound(
        ctx,
        o,
        u,
        "maxProperties",
        [MAX_PROPERTIES_ADDED, MAX_PROPERTIES_REMOVED, MAX_PROPERTIES_INCREASED, MAX_PROPERTIES_DECREASED],
    );
    bound(
        ctx,
        o,
        u,
        "minProperties",
        [MIN_PROPERTIES_ADDED, MIN_PROPERTIES_REMOVED, MIN_PROPERTIES_INCREASED, MIN_PROPERTIES_DECREASED],
    );
}

fn props(m: &Obj) -> BTreeMap<&str, At<'_>> {
    match m.get("properties").and_then(Value::as_object) {
        Some(p) => p.iter().map(|(k, v)| (k.as_str(), At::new(v))).collect(),
        None => BTreeMap::new(),
    }
}

fn required_names(m: &Obj) -> BTreeSet<&str> {
    m.get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn keyword<'a>(m: &'a Obj, kw: &str) -> Option<At<'a>> {
    m.get(kw).map(At::new)
}

/// `additionalProperties` when it is a real schema (not `true`, `{}` or `false`).
fn additional_schema<'a>(doc: Doc<'a>, m: &'a Obj) -> Option<At<'a>> {
    keyword(m, "additionalProperties").filter(|a| !doc.is_empty(*a) && !doc.is_false(*a))
}

/// `unevaluatedProperties`, with `true` and `{}` read as absent.
fn unevaluated_schema<'a>(doc: Doc<'a>, m: &'a Obj) -> Option<At<'a>> {
    keyword(m, "unevaluatedProperties").filter(|a| !doc.is_empty(*a))
}

fn permits_additional<'a>(doc: Doc<'a>, m: &'a Obj) -> bool {
    keyword(m, "additionalProperties").is_none_or(|a| !doc.is_false(a))
}

fn pattern_properties(m: &Obj) -> Vec<(&str, At<'_>)> {
    match m.get("patternProperties").and_then(Value::as_object) {
        Some(p) => p.iter().map(|(k, v)| (k.as_str(), At::new(v))).collect(),
        None => Vec::new(),
    }
}

/// Open: anything undeclared is accepted as it is.
fn is_open<'a>(doc: Doc<'a>, m: &'a Obj) -> bool {
    pattern_properties(m).is_empty()
        && match keyword(m, "additionalProperties") {
            Some(a) => doc.is_empty(a),
            None => unevaluated_schema(doc, m).is_none(),
        }
}

/// The schema an undeclared property named `name` must match, in a
/// partially open model.
fn undeclared_schema<'a>(doc: Doc<'a>, m: &'a Obj, name: &str) -> Option<At<'a>> {
    for (pattern, schema) in pattern_properties(m) {
        if pattern_matches(pattern, name) {
            return Some(schema);
        }
    }
    if let Some(a) = additional_schema(doc, m) {
        return Some(a);
    }
    if m.contains_key("additionalProperties") {
        return None;
    }
    unevaluated_schema(doc, m).filter(|s| !doc.is_false(*s))
}

/// ECMA-262 regex search, as JSON Schema's `patternProperties` means it;
/// the validator's own engine answers so the two never disagree.
fn pattern_matches(pattern: &str, name: &str) -> bool {
    jsonschema::draft202012::new(&json!({ "pattern": pattern })).map(|v| v.is_valid(&json!(name))).unwrap_or(false)
}

fn required<'a>(ctx: &mut Ctx<'a, '_>, o: &'a Obj, u: &'a Obj) {
    let (ro, ru) = (required_names(o), required_names(u));
    let (po, pu) = (props(o), props(u));
    ctx.within("required", |ctx| {
        for (name, _) in po.iter() {
            let Some(b) = pu.get(name) else { continue };
            let rule = match (ro.contains(name), ru.contains(name)) {
                (true, false) => REQUIRED_ATTRIBUTE_REMOVED,
                (false, true) if ctx.u.has_default(*b) => REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED,
                (false, true) => REQUIRED_ATTRIBUTE_ADDED,
                _ => continue,
            };
            ctx.add_at(&escape(name), rule);
        }
        // Names required without being declared; Confluent skips these.
        for name in ru.difference(&ro) {
            if !pu.contains_key(name) {
                ctx.add_at(&escape(name), REQUIRED_ATTRIBUTE_ADDED);
            }
        }
    });
}

fn properties<'a>(ctx: &mut Ctx<'a, '_>, o: &'a Obj, u: &'a Obj) {
    let (po, pu) = (props(o), props(u));
    let ru = required_names(u);
    let names: BTreeSet<&str> = po.keys().chain(pu.keys()).copied().collect();
    ctx.within("properties", |ctx| {
        for name in names {
            ctx.within(&escape(name), |ctx| match (po.get(name), pu.get(name)) {
                (Some(a), Some(b)) => compare(ctx, *a, *b),
                (Some(a), None) => removed(ctx, u, name, *a),
                (None, Some(b)) => added(ctx, o, name, *b, ru.contains(name)),
                (None, None) => {}
            });
        }
    });
}

/// A property the writer declared and the reader does not. Only the
/// reader's content model matters: it decides what it does with the value.
fn removed<'a>(ctx: &mut Ctx<'a, '_>, u: &'a Obj, name: &str, was: At<'a>) {
    if is_open(ctx.u, u) {
        ctx.add(PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL);
    } else if let Some(cover) = undeclared_schema(ctx.u, u, name) {
        let mut s = ctx.sub();
        compare(&mut s, was, cover);
        let ok = s.compatible();
        ctx.absorb(s);
        ctx.add(if ok {
            PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        } else {
            PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        });
    } else if ctx.o.is_false(was) {
        ctx.add(PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL);
    } else {
        ctx.add(PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL);
    }
}

/// A property the reader declares and the writer did not. Only the
/// writer's content model matters: it decides what old data may hold there.
fn added<'a>(ctx: &mut Ctx<'a, '_>, o: &'a Obj, name: &str, now: At<'a>, required: bool) {
    let default = ctx.u.has_default(now);
    if is_open(ctx.o, o) {
        ctx.add(match (ctx.u.is_empty(now), required, default) {
            (true, _, _) => PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL,
            (false, true, false) => REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL,
            (false, true, true) => REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL,
            (false, false, _) => OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL,
        });
        return;
    }
    if let Some(cover) = undeclared_schema(ctx.o, o, name) {
        let mut s = ctx.sub();
        compare(&mut s, cover, now);
        let ok = s.compatible();
        ctx.absorb(s);
        ctx.add(if ok {
            PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        } else {
            PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        });
    }
    ctx.add(match (required, default) {
        (true, false) => REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL,
        (true, true) => REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL,
        (false, _) => OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL,
    });
}

/// `dependentRequired` / `dependentSchemas`, with draft-7 `dependencies`
/// read into whichever of the two each entry is.
fn dependencies<'a>(ctx: &mut Ctx<'a, '_>, o: &'a Obj, u: &'a Obj) {
    type Split<'a> = (BTreeMap<&'a str, BTreeSet<&'a str>>, BTreeMap<&'a str, At<'a>>);
    fn split(m: &Obj) -> Split<'_> {
        let (mut arrays, mut schemas) = (BTreeMap::new(), BTreeMap::new());
        for kw in ["dependencies", "dependentRequired", "dependentSchemas"] {
            for (k, v) in m.get(kw).and_then(Value::as_object).into_iter().flatten() {
                match v {
                    Value::Array(names) => {
                        arrays.insert(k.as_str(), names.iter().filter_map(Value::as_str).collect());
                    }
                    _ => {
                        schemas.insert(k.as_str(), At::new(v));
                    }
                }
            }
        }
        (arrays, schemas)
    }
    let ((ao, so), (au, su)) = (split(o), split(u));
    ctx.within("dependentRequired", |ctx| {
        let names: BTreeSet<&str> = ao.keys().chain(au.keys()).copied().collect();
        for name in names {
            let rule = match (ao.get(name), au.get(name)) {
                (Some(_), None) => DEPENDENCY_ARRAY_REMOVED,
                (None, Some(_)) => DEPENDENCY_ARRAY_ADDED,
                (Some(a), Some(b)) if a == b => continue,
                (Some(a), Some(b)) if b.is_superset(a) => DEPENDENCY_ARRAY_EXTENDED,
                (Some(a), Some(b)) if a.is_superset(b) => DEPENDENCY_ARRAY_NARROWED,
                (Some(_), Some(_)) => DEPENDENCY_ARRAY_CHANGED,
                (None, None) => continue,
            };
            ctx.add_at(&escape(name), rule);
        }
    });
    ctx.within("dependentSchemas", |ctx| {
        let names: BTreeSet<&str> = so.keys().chain(su.keys()).copied().collect();
        for name in names {
            ctx.within(&escape(name), |ctx| match (so.get(name), su.get(name)) {
                (Some(_), None) => ctx.add(DEPENDENCY_SCHEMA_REMOVED),
                (None, Some(_)) => ctx.add(DEPENDENCY_SCHEMA_ADDED),
                (Some(a), Some(b)) => compare(ctx, *a, *b),
                (None, None) => {}
            });
        }
    });
}

fn additional<'a>(ctx: &mut Ctx<'a, '_>, o: &'a Obj, u: &'a Obj) {
    ctx.within("additionalProperties", |ctx| {
        let (po, pu) = (permits_additional(ctx.o, o), permits_additional(ctx.u, u));
        if po != pu {
            ctx.add(if pu { ADDITIONAL_PROPERTIES_ADDED } else { ADDITIONAL_PROPERTIES_REMOVED });
            return;
        }
        match (additional_schema(ctx.o, o), additional_schema(ctx.u, u)) {
            (None, Some(_)) => ctx.add(ADDITIONAL_PROPERTIES_NARROWED),
            (Some(_), None) => ctx.add(ADDITIONAL_PROPERTIES_EXTENDED),
            (Some(a), Some(b)) => compare(ctx, a, b),
            (None, None) => {}
        }
    });
}

/// As Confluent's `compareUnevaluatedItems`, for properties.
fn unevaluated<'a>(ctx: &mut Ctx<'a, '_>, o: &'a Obj, u: &'a Obj) {
    let (a, b) = (unevaluated_schema(ctx.o, o), unevaluated_schema(ctx.u, u));
    if a.is_none() && b.is_none() {
        return;
    }
    ctx.within("unevaluatedProperties", |ctx| {
        let (fa, fb) = (a.is_some_and(|s| ctx.o.is_false(s)), b.is_some_and(|s| ctx.u.is_false(s)));
        match (a, b) {
            (None, Some(_)) if fb => ctx.add(UNEVALUATED_PROPERTIES_REMOVED),
            (None, Some(_)) => ctx.add(UNEVALUATED_PROPERTIES_NARROWED),
            (Some(_), None) if fa => ctx.add(UNEVALUATED_PROPERTIES_ADDED),
            (Some(_), None) => ctx.add(UNEVALUATED_PROPERTIES_EXTENDED),
            (Some(_), Some(_)) if fa && !fb => ctx.add(UNEVALUATED_PROPERTIES_ADDED),
            (Some(_), Some(_)) if !fa && fb => ctx.add(UNEVALUATED_PROPERTIES_REMOVED),
            (Some(x), Some(y)) => compare(ctx, x, y),
            (None, None) => {}
        }
    });
}
