//! Arrays, after Confluent's `ArraySchemaDiff`. A tuple (`prefixItems`, or
//! draft-7 `items: [...]`) has a content model like an object's: the schema
//! for items past the tuple (`items` beside `prefixItems`, or draft-7
//! `additionalItems`) is open, closed or partially open.

use super::{bound, compare, Ctx};
use crate::schema::compat::node::{At, Doc};
use crate::schema::compat::rule::*;
use serde_json::{Map, Value};

type Obj = Map<String, Value>;

/// An array schema's item keywords, whichever draft's spelling it uses.
struct Items<'a> {
    /// The tuple and the keyword it is under.
    tuple: Option<(&'static str, &'a [Value])>,
    /// One schema for every item (no tuple).
    all: Option<At<'a>>,
    /// The schema for items past the tuple, and its keyword.
    rest: Option<(&'static str, At<'a>)>,
    /// `unevaluatedItems`, with `true` and `{}` read as absent.
    unevaluated: Option<At<'a>>,
}

impl<'a> Items<'a> {
    fn of(doc: Doc<'a>, m: &'a Obj) -> Self {
        let unevaluated = m.get("unevaluatedItems").map(At::new).filter(|a| !doc.is_empty(*a));
        if let Some(Value::Array(t)) = m.get("prefixItems") {
            let rest = m.get("items").map(|v| ("items", At::new(v)));
            return Items { tuple: Some(("prefixItems", t)), all: None, rest, unevaluated };
        }
        if let Some(Value::Array(t)) = m.get("items") {
            let rest = m.get("additionalItems").map(|v| ("additionalItems", At::new(v)));
            return Items { tuple: Some(("items", t)), all: None, rest, unevaluated };
        }
        Items { tuple: None, all: m.get("items").map(At::new), rest: None, unevaluated }
    }

    fn permits_rest(&self, doc: Doc<'a>) -> bool {
        self.rest.is_none_or(|(_, a)| !doc.is_false(a))
    }

    /// The rest schema when it is a real schema (not `true`, `{}`, `false`).
    fn rest_schema(&self, doc: Doc<'a>) -> Option<At<'a>> {
        self.rest.map(|(_, a)| a).filter(|a| !doc.is_empty(*a) && !doc.is_false(*a))
    }

    fn is_open(&self, doc: Doc<'a>) -> bool {
        match self.rest {
            Some((_, a)) => doc.is_empty(a),
            None => self.unevaluated.is_none(),
        }
    }

    /// What items past the tuple must match in a partially open model.
    fn partial(&self, doc: Doc<'a>) -> Option<At<'a>> {
        if let Some(a) = self.rest_schema(doc) {
            return Some(a);
        }
        if self.rest.is_some() {
            return None;
        }
        self.unevaluated.filter(|u| !doc.is_false(*u))
    }
}

pub(super) fn compare_array<'a>(ctx: &mut Ctx<'a, '_>, o: &'a Obj, u: &'a Obj) {
    let (io, iu) = (Items::of(ctx.o, o), Items::of(ctx.u, u));
    ctx.within("items", |ctx| match (io.all, iu.all) {
        (None, Some(_)) => ctx.add(SCHEMA_ADDED),
        (Some(_), None) => ctx.add(SCHEMA_REMOVED),
        (Some(a), Some(b)) => compare(ctx, a, b),
        (None, None) => {}
    });
    tuple(ctx, &io, &iu);
    rest(ctx, &io, &iu);
    unevaluated(ctx, &io, &iu);
    bound(ctx, o, u, "maxItems", [MAX_ITEMS_ADDED, MAX_ITEMS_REMOVED, MAX_ITEMS_INCREASED, MAX_ITEMS_DECREASED]);
    bound(ctx, o, u, "minItems", [MIN_ITEMS_ADDED, MIN_ITEMS_REMOVED, MIN_ITEMS_INCREASED, MIN_ITEMS_DECREASED]);
    let unique = |m: &Obj| m.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false);
    match (unique(o), unique(u)) {
        (true, false) => ctx.add_at("uniqueItems", UNIQUE_ITEMS_REMOVED),
        (false, true) => ctx.add_at("uniqueItems", UNIQUE_ITEMS_ADDED),
        _ => {}
    }
    bound(
        ctx,
        o,
        u,
        "maxContains",
        [MAX_CONTAINS_ADDED, MAX_CONTAINS_REMOVED, MAX_CONTAINS_INCREASED, MAX_CONTAINS_DECREASED],
    );
    bound(
        ctx,
        o,
        u,
        "minContains",
        [MIN_CONTAINS_ADDED, MIN_CONTAINS_REMOVED, MIN_CONTAINS_INCREASED, MIN_CONTAINS_DECREASED],
    );
}

/// Tuple positions: common ones compared, extra ones judged by the other
/// side's content model, as for object properties.
fn tuple<'a>(ctx: &mut Ctx<'a, '_>, io: &Items<'a>, iu: &Items<'a>) {
    let kw = io.tuple.or(iu.tuple).map_or("prefixItems", |(k, _)| k);
    let to: &[Value] = io.tuple.map_or(&[], |(_, t)| t);
    let tu: &[Value] = iu.tuple.map_or(&[], |(_, t)| t);
    ctx.within(kw, |ctx| {
        for i in 0..to.len().max(tu.len()) {
            ctx.within(&i.to_string(), |ctx| match (to.get(i), tu.get(i)) {
                (Some(a), Some(b)) => compare(ctx, At::new(a), At::new(b)),
                (Some(a), None) => item_removed(ctx, iu, At::new(a)),
                (None, Some(b)) => item_added(ctx, io, At::new(b)),
                (None, None) => {}
            });
        }
    });
}

fn item_removed<'a>(ctx: &mut Ctx<'a, '_>, iu: &Items<'a>, was: At<'a>) {
    if iu.is_open(ctx.u) {
        ctx.add(ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL);
    } else if let Some(cover) = iu.partial(ctx.u) {
        let mut s = ctx.sub();
        compare(&mut s, was, cover);
        let ok = s.compatible();
        ctx.absorb(s);
        ctx.add(if ok {
            ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        } else {
            ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        });
    } else if ctx.o.is_false(was) {
        ctx.add(ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL);
    } else {
        ctx.add(ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL);
    }
}

fn item_added<'a>(ctx: &mut Ctx<'a, '_>, io: &Items<'a>, now: At<'a>) {
    if io.is_open(ctx.o) {
        ctx.add(if ctx.u.is_empty(now) {
            ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
        } else {
            ITEM_ADDED_TO_OPEN_CONTENT_MODEL
        });
    } else if let Some(cover) = io.partial(ctx.o) {
        let mut s = ctx.sub();
        compare(&mut s, cover, now);
        let ok = s.compatible();
        ctx.absorb(s);
        ctx.add(if ok {
            ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        } else {
            ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
        });
    } else {
        // A closed tuple never wrote anything at this position.
        ctx.add(ITEM_ADDED_TO_CLOSED_CONTENT_MODEL);
    }
}

/// Confluent's `compareAdditionalItems`: the schema for items past the tuple.
fn rest<'a>(ctx: &mut Ctx<'a, '_>, io: &Items<'a>, iu: &Items<'a>) {
    let kw = io.rest.or(iu.rest).map_or("items", |(k, _)| k);
    ctx.within(kw, |ctx| {
        let (po, pu) = (io.permits_rest(ctx.o), iu.permits_rest(ctx.u));
        if po != pu {
            ctx.add(if po { ADDITIONAL_ITEMS_REMOVED } else { ADDITIONAL_ITEMS_ADDED });
            return;
        }
        match (io.rest_schema(ctx.o), iu.rest_schema(ctx.u)) {
            (None, Some(_)) => ctx.add(ADDITIONAL_ITEMS_NARROWED),
            (Some(_), None) => ctx.add(ADDITIONAL_ITEMS_EXTENDED),
            (Some(a), Some(b)) => compare(ctx, a, b),
            (None, None) => {}
        }
    });
}

/// Confluent's `compareUnevaluatedItems`.
fn unevaluated<'a>(ctx: &mut Ctx<'a, '_>, io: &Items<'a>, iu: &Items<'a>) {
    let (a, b) = (io.unevaluated, iu.unevaluated);
    if a.is_none() && b.is_none() {
        return;
    }
    ctx.within("unevaluatedItems", |ctx| {
        let (fa, fb) = (a.is_some_and(|s| ctx.o.is_false(s)), b.is_some_and(|s| ctx.u.is_false(s)));
        match (a, b) {
            (None, Some(_)) if fb => ctx.add(UNEVALUATED_ITEMS_REMOVED),
            (None, Some(_)) => ctx.add(UNEVALUATED_ITEMS_NARROWED),
            (Some(_), None) if fa => ctx.add(UNEVALUATED_ITEMS_ADDED),
            (Some(_), None) => ctx.add(UNEVALUATED_ITEMS_EXTENDED),
            (Some(_), Some(_)) if fa && !fb => ctx.add(UNEVALUATED_ITEMS_ADDED),
            (Some(_), Some(_)) if !fa && fb => ctx.add(UNEVALUATED_ITEMS_REMOVED),
            (Some(x), Some(y)) => compare(ctx, x, y),
            (None, None) => {}
        }
    });
}
