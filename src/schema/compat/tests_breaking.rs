//! One test per kind of incompatible change, each asserting Confluent's
//! rule name and the path it is reported at.

use super::rule::*;
use super::tests::{backward, has, obj, one};
use super::*;
use serde_json::json;

#[test]
fn required_property_added_to_closed_model() {
    let v1 = obj(json!({"id": {"type": "string"}}), &["id"], false);
    let v2 = obj(json!({"id": {"type": "string"}, "amount": {"type": "number"}}), &["id", "amount"], false);
    assert_eq!(backward(v1, v2), one(REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL, "#/properties/amount"));
}

#[test]
fn a_default_does_not_make_a_new_required_property_safe() {
    let v1 = obj(json!({"id": {"type": "string"}}), &["id"], false);
    let v2 =
        obj(json!({"id": {"type": "string"}, "amount": {"type": "number", "default": 0}}), &["id", "amount"], false);
    let found = check(Compatibility::Backward, &[&v1], &v2);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule, REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL);
    assert_eq!(found[0].path, "#/properties/amount");
    assert!(found[0].message.contains("never fills defaults"), "{}", found[0].message);
}

#[test]
fn existing_property_made_required() {
    let v1 = obj(json!({"id": {"type": "string"}, "n": {"type": "number"}}), &["id"], false);
    let v2 = obj(json!({"id": {"type": "string"}, "n": {"type": "number"}}), &["id", "n"], false);
    assert_eq!(backward(v1, v2), one(REQUIRED_ATTRIBUTE_ADDED, "#/required/n"));
    let v3 = obj(json!({"id": {"type": "string"}}), &["id", "ghost"], true);
    let v4 = obj(json!({"id": {"type": "string"}}), &["id"], true);
    assert_eq!(backward(v4, v3), one(REQUIRED_ATTRIBUTE_ADDED, "#/required/ghost"));
}

#[test]
fn property_added_to_open_model() {
    let v1 = obj(json!({"id": {"type": "string"}}), &["id"], true);
    let v2 = obj(json!({"id": {"type": "string"}, "note": {"type": "string"}}), &["id"], true);
    assert_eq!(
        backward(v1.clone(), v2.clone()),
        one(OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL, "#/properties/note")
    );
    let v3 = obj(json!({"id": {"type": "string"}, "note": {"type": "string"}}), &["id", "note"], true);
    assert_eq!(backward(v1.clone(), v3), one(REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL, "#/properties/note"));
    // ... unless the new property accepts anything.
    let v4 = obj(json!({"id": {"type": "string"}, "note": {}}), &["id"], true);
    assert_eq!(backward(v1, v4), []);
}

#[test]
fn property_removed_from_closed_model() {
    let v1 = obj(json!({"id": {"type": "string"}, "amount": {"type": "number"}}), &["id"], false);
    let v2 = obj(json!({"id": {"type": "string"}}), &["id"], false);
    assert_eq!(backward(v1, v2), one(PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL, "#/properties/amount"));
}

#[test]
fn property_type_narrowed_or_changed() {
    let v1 = obj(json!({"amount": {"type": "number"}}), &[], false);
    let v2 = obj(json!({"amount": {"type": "integer"}}), &[], false);
    assert_eq!(backward(v1.clone(), v2), one(TYPE_NARROWED, "#/properties/amount"));
    let v3 = obj(json!({"amount": {"type": "string"}}), &[], false);
    assert_eq!(backward(v1, v3), one(TYPE_CHANGED, "#/properties/amount"));
    let nullable = obj(json!({"a": {"type": ["string", "null"]}}), &[], false);
    let plain = obj(json!({"a": {"type": "string"}}), &[], false);
    assert_eq!(backward(nullable, plain), one(TYPE_CHANGED, "#/properties/a"));
}

#[test]
fn enum_value_removed() {
    let v1 = obj(json!({"status": {"type": "string", "enum": ["open", "closed"]}}), &[], false);
    let v2 = obj(json!({"status": {"type": "string", "enum": ["open"]}}), &[], false);
    assert_eq!(backward(v1.clone(), v2), one(ENUM_ARRAY_NARROWED, "#/properties/status/enum"));
    let v3 = obj(json!({"status": {"type": "string", "enum": ["open", "pending"]}}), &[], false);
    assert_eq!(backward(v1, v3), one(ENUM_ARRAY_CHANGED, "#/properties/status/enum"));
}

#[test]
fn string_and_number_limits_tightened() {
    let v1 =
        obj(json!({"name": {"type": "string", "maxLength": 50}, "n": {"type": "number", "minimum": 0}}), &[], false);
    let v2 = obj(
        json!({"name": {"type": "string", "maxLength": 20, "minLength": 1}, "n": {"type": "number", "minimum": 1, "maximum": 9, "multipleOf": 2}}),
        &[],
        false,
    );
    let mut found = backward(v1, v2);
    found.sort();
    let mut want = vec![
        (MAX_LENGTH_DECREASED, "#/properties/name/maxLength".to_owned()),
        (MIN_LENGTH_ADDED, "#/properties/name/minLength".to_owned()),
        (MINIMUM_INCREASED, "#/properties/n/minimum".to_owned()),
        (MAXIMUM_ADDED, "#/properties/n/maximum".to_owned()),
        (MULTIPLE_OF_ADDED, "#/properties/n/multipleOf".to_owned()),
    ];
    want.sort();
    assert_eq!(found, want);
    let a = json!({"type": "number", "multipleOf": 2, "exclusiveMaximum": 10});
    let b = json!({"type": "number", "multipleOf": 4, "exclusiveMaximum": 5});
    let mut found = backward(a, b);
    found.sort();
    assert_eq!(
        found,
        [
            (EXCLUSIVE_MAXIMUM_DECREASED, "#/exclusiveMaximum".to_owned()),
            (MULTIPLE_OF_EXPANDED, "#/multipleOf".to_owned())
        ]
    );
}

#[test]
fn additional_properties_false_added() {
    let v1 = obj(json!({"id": {"type": "string"}}), &["id"], true);
    let v2 = obj(json!({"id": {"type": "string"}}), &["id"], false);
    assert_eq!(backward(v1.clone(), v2), one(ADDITIONAL_PROPERTIES_REMOVED, "#/additionalProperties"));
    let mut v3 = v1.clone();
    v3["additionalProperties"] = json!({"type": "string"});
    assert_eq!(backward(v1, v3), one(ADDITIONAL_PROPERTIES_NARROWED, "#/additionalProperties"));
}

#[test]
fn unevaluated_properties_false_added() {
    let v1 = json!({"type": "object", "properties": {"a": {}}});
    let v2 = json!({"type": "object", "properties": {"a": {}}, "unevaluatedProperties": false});
    assert_eq!(backward(v1, v2), one(UNEVALUATED_PROPERTIES_REMOVED, "#/unevaluatedProperties"));
}

#[test]
fn nested_objects_and_array_items() {
    let v1 = obj(
        json!({
            "address": obj(json!({"zip": {"type": "string"}}), &[], false),
            "lines": {"type": "array", "items": obj(json!({"sku": {"type": "string"}}), &["sku"], false), "minItems": 1}
        }),
        &[],
        false,
    );
    let v2 = obj(
        json!({
            "address": obj(json!({"zip": {"type": "integer"}}), &[], false),
            "lines": {"type": "array", "items": obj(json!({"sku": {"type": "string"}, "qty": {"type": "integer"}}), &["sku", "qty"], false), "minItems": 2, "maxItems": 9}
        }),
        &[],
        false,
    );
    let mut found = backward(v1, v2);
    found.sort();
    let mut want = vec![
        (TYPE_CHANGED, "#/properties/address/properties/zip".to_owned()),
        (REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL, "#/properties/lines/items/properties/qty".to_owned()),
        (MIN_ITEMS_INCREASED, "#/properties/lines/minItems".to_owned()),
        (MAX_ITEMS_ADDED, "#/properties/lines/maxItems".to_owned()),
    ];
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn tuples_follow_the_item_content_model() {
    let closed2 = json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false});
    let closed1 = json!({"type": "array", "prefixItems": [{"type": "string"}], "items": false});
    assert_eq!(
        backward(closed2.clone(), closed1.clone()),
        one(ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL, "#/prefixItems/1")
    );
    assert_eq!(backward(closed1, closed2), []);
    let open1 = json!({"type": "array", "prefixItems": [{"type": "string"}]});
    let open2 = json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]});
    assert_eq!(backward(open1, open2), one(ITEM_ADDED_TO_OPEN_CONTENT_MODEL, "#/prefixItems/1"));
}

#[test]
fn partially_open_models_check_coverage() {
    let v1 = json!({"type": "object", "properties": {}, "patternProperties": {"^x_": {"type": "string"}}, "additionalProperties": false});
    let covered = json!({"type": "object", "properties": {"x_a": {"type": "string", "maxLength": 9}}, "patternProperties": {"^x_": {"type": "string"}}, "additionalProperties": false});
    // The pattern let any string through under that name; the new maxLength rejects some.
    assert_eq!(
        backward(v1.clone(), covered),
        [
            (MAX_LENGTH_ADDED, "#/properties/x_a/maxLength".to_owned()),
            (PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL, "#/properties/x_a".to_owned()),
        ]
    );
    let loose = json!({"type": "object", "properties": {"x_a": {"type": "string"}}, "patternProperties": {"^x_": {"type": "string"}}, "additionalProperties": false});
    assert_eq!(backward(v1.clone(), loose.clone()), []);
    assert!(has(&v1, &loose, PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL, "#/properties/x_a"));
    let typed_extra =
        json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}});
    let dropped = json!({"type": "object", "properties": {}, "additionalProperties": {"type": "string"}});
    assert!(backward(typed_extra, dropped)
        .contains(&(PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL, "#/properties/a".to_owned())));
}

#[test]
fn combined_schemas() {
    let v1 = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
    let fewer = json!({"oneOf": [{"type": "string"}]});
    let found = backward(v1.clone(), fewer);
    assert!(found.contains(&(SUM_TYPE_NARROWED, "#/".to_owned())), "{found:?}");
    let more = json!({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]});
    assert_eq!(backward(v1.clone(), more), []);
    let all = json!({"allOf": [{"type": "string"}, {"type": "integer"}]});
    assert_eq!(backward(v1, all), one(COMBINED_TYPE_CHANGED, "#/"));
    let branch = json!({"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]});
    let tighter = json!({"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]});
    let found = backward(branch, tighter);
    assert!(found.contains(&(COMBINED_TYPE_SUBSCHEMAS_CHANGED, "#/".to_owned())), "{found:?}");
}

#[test]
fn not_schemas_flip_direction() {
    let v1 = json!({"not": {"type": "string", "maxLength": 3}});
    let v2 = json!({"not": {"type": "string"}});
    assert_eq!(backward(v1.clone(), v2.clone()), one(NOT_TYPE_EXTENDED, "#/not"));
    assert_eq!(backward(v2, v1), []);
}

#[test]
fn dependent_required_extended() {
    let v1 = json!({"type": "object", "dependentRequired": {"card": ["cvv"]}});
    let v2 = json!({"type": "object", "dependentRequired": {"card": ["cvv", "expiry"]}});
    assert_eq!(backward(v1.clone(), v2.clone()), one(DEPENDENCY_ARRAY_EXTENDED, "#/dependentRequired/card"));
    assert_eq!(backward(v2, v1), []);
}

#[test]
fn local_refs_are_followed_and_recursion_terminates() {
    let v1 = json!({
        "type": "object",
        "properties": {"claimant": {"$ref": "#/$defs/person"}},
        "$defs": {"person": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 40},
            "manager": {"$ref": "#/$defs/person"}
        }}}
    });
    let mut v2 = v1.clone();
    v2["$defs"]["person"]["properties"]["name"]["maxLength"] = json!(20);
    assert_eq!(backward(v1.clone(), v1.clone()), []);
    // Reported where the definition is used, down to where the recursion comes back round.
    assert_eq!(
        backward(v1, v2),
        [
            (MAX_LENGTH_DECREASED, "#/properties/claimant/properties/manager/properties/name/maxLength".to_owned()),
            (MAX_LENGTH_DECREASED, "#/properties/claimant/properties/name/maxLength".to_owned()),
        ]
    );
}
