use super::rule::*;
use super::*;
use serde_json::json;

pub(super) fn backward(old: Value, new: Value) -> Vec<(&'static str, String)> {
    check(Compatibility::Backward, &[&old], &new).into_iter().map(|i| (i.rule, i.path)).collect()
}

pub(super) fn forward(old: Value, new: Value) -> Vec<(&'static str, String)> {
    check(Compatibility::Forward, &[&old], &new).into_iter().map(|i| (i.rule, i.path)).collect()
}

pub(super) fn one(rule: &'static str, path: &str) -> Vec<(&'static str, String)> {
    vec![(rule, path.to_owned())]
}

/// An object schema, closed unless `open`.
pub(super) fn obj(props: Value, required: &[&str], open: bool) -> Value {
    let mut s = json!({"type": "object", "properties": props, "required": required});
    if !open {
        s["additionalProperties"] = json!(false);
    }
    s
}

pub(super) fn has(old: &Value, new: &Value, rule: &str, path: &str) -> bool {
    differences(old, new).iter().any(|(r, p)| *r == rule && p == path)
}

// --- compatible evolutions -------------------------------------------------

#[test]
fn optional_property_added_to_closed_model_is_compatible() {
    let v1 = obj(json!({"id": {"type": "string"}}), &["id"], false);
    let v2 = obj(json!({"id": {"type": "string"}, "note": {"type": "string"}}), &["id"], false);
    assert_eq!(backward(v1.clone(), v2.clone()), []);
    assert!(has(&v1, &v2, OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL, "#/properties/note"));
}

#[test]
fn property_removed_from_open_model_is_compatible() {
    let v1 = obj(json!({"id": {"type": "string"}, "note": {"type": "string"}}), &["id"], true);
    let v2 = obj(json!({"id": {"type": "string"}}), &["id"], true);
    assert_eq!(backward(v1.clone(), v2.clone()), []);
    assert!(has(&v1, &v2, PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL, "#/properties/note"));
}

#[test]
fn widenings_are_compatible() {
    let v1 = obj(
        json!({
            "n": {"type": "integer", "minimum": 0, "maximum": 10},
            "s": {"type": "string", "maxLength": 5, "minLength": 2, "pattern": "^a"},
            "e": {"type": "string", "enum": ["a", "b"]},
            "u": {"type": "string"},
            "k": {"const": "x"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3, "uniqueItems": true}
        }),
        &["n", "s"],
        false,
    );
    let v2 = obj(
        json!({
            "n": {"type": "number", "minimum": -1},
            "s": {"type": "string", "maxLength": 9},
            "e": {"type": "string", "enum": ["a", "b", "c"]},
            "u": {"type": ["string", "null"]},
            "k": {"enum": ["x", "y"]},
            "tags": {"type": "array", "items": {"type": "string"}}
        }),
        &["n"],
        true,
    );
    assert_eq!(backward(v1.clone(), v2.clone()), []);
    for (rule, path) in [
        (TYPE_EXTENDED, "#/properties/n"),
        (MAXIMUM_REMOVED, "#/properties/n/maximum"),
        (MINIMUM_DECREASED, "#/properties/n/minimum"),
        (MAX_LENGTH_INCREASED, "#/properties/s/maxLength"),
        (PATTERN_REMOVED, "#/properties/s/pattern"),
        (ENUM_ARRAY_EXTENDED, "#/properties/e/enum"),
        (SUM_TYPE_EXTENDED, "#/properties/u"),
        (ENUM_ARRAY_EXTENDED, "#/properties/k/const"),
        (UNIQUE_ITEMS_REMOVED, "#/properties/tags/uniqueItems"),
        (REQUIRED_ATTRIBUTE_REMOVED, "#/required/s"),
        (ADDITIONAL_PROPERTIES_ADDED, "#/additionalProperties"),
    ] {
        assert!(has(&v1, &v2, rule, path), "{rule} at {path}: {:?}", differences(&v1, &v2));
    }
}

#[test]
fn dropping_an_enum_keeps_the_type_and_is_compatible() {
    let v1 = json!({"type": "string", "enum": ["a", "b"]});
    let v2 = json!({"type": "string"});
    assert_eq!(backward(v1.clone(), v2.clone()), []);
    assert!(has(&v1, &v2, PRODUCT_TYPE_NARROWED, "#/"));
    assert_eq!(backward(v2, v1), one(PRODUCT_TYPE_EXTENDED, "#/"));
}

#[test]
fn identical_and_annotation_only_changes_are_compatible() {
    let v1 = json!({"type": "object", "title": "a", "properties": {"x": {"type": "string", "description": "d"}}});
    let v2 = json!({"type": "object", "title": "b", "properties": {"x": {"type": "string", "default": "z"}}});
    assert_eq!(differences(&v1, &v1), []);
    assert_eq!(backward(v1, v2), []);
}

// --- policies ----------------------------------------------------------

#[test]
fn forward_and_full_swap_the_reader() {
    // Adding a required property to an open model: old readers ignore it (forward
    // compatible), new readers cannot trust old data (backward incompatible).
    let v1 = obj(json!({"id": {"type": "string"}}), &["id"], true);
    let v2 = obj(json!({"id": {"type": "string"}, "model": {"type": "string"}}), &["id", "model"], true);
    assert_eq!(forward(v1.clone(), v2.clone()), []);
    assert_eq!(
        backward(v1.clone(), v2.clone()),
        one(REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL, "#/properties/model")
    );
    let full = check(Compatibility::Full, &[&v1], &v2);
    assert_eq!(full.len(), 1);
    assert!(full[0].message.starts_with("backward:"), "{}", full[0].message);
    // Adding an optional property to a closed model is backward compatible, but an old
    // closed reader rejects events that carry it.
    let c1 = obj(json!({"id": {"type": "string"}}), &["id"], false);
    let c2 = obj(json!({"id": {"type": "string"}, "note": {"type": "string"}}), &["id"], false);
    assert_eq!(forward(c1, c2), one(PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL, "#/properties/note"));
}

#[test]
fn transitive_checks_every_earlier_version() {
    let v1 = obj(json!({"a": {}, "b": {}}), &[], false);
    let v2 = obj(json!({"a": {}}), &[], false);
    let v3 = v2.clone();
    assert_eq!(check(Compatibility::Backward, &[&v1, &v2], &v3), []);
    let found = check(Compatibility::BackwardTransitive, &[&v1, &v2], &v3);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].rule, found[0].path.as_str()), (PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL, "#/properties/b"));
    assert!(found[0].message.contains("previous schema 1 of 2"), "{}", found[0].message);
    assert_eq!(check(Compatibility::None, &[&v1, &v2], &json!(false)), []);
    assert_eq!(check(Compatibility::FullTransitive, &[], &v1), []);
}

#[test]
fn compatibility_names() {
    for c in Compatibility::ALL {
        assert_eq!(c.as_str().parse::<Compatibility>(), Ok(c));
        assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        assert_eq!(serde_json::from_value::<Compatibility>(json!(c.as_str())).unwrap(), c);
    }
    assert_eq!("FULL_TRANSITIVE".parse(), Ok(Compatibility::FullTransitive));
    assert!("sideways".parse::<Compatibility>().is_err());
    assert_eq!(Compatibility::default(), Compatibility::Backward);
}

#[test]
fn every_compatible_change_is_a_known_rule_and_defaults_are_not_among_them() {
    assert!(!is_compatible_change(REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED));
    assert!(!is_compatible_change(REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL));
    assert!(is_compatible_change(OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL));
    assert!(!is_compatible_change(OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL));
}
