//! `modelbus schema check`: a compatible evolution passes (exit 0); each
//! kind of incompatible change is refused with its rule and JSON path (exit 1),
//! so a pull-request pipeline can gate on it.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

fn check(dir: &Path) -> (i32, String) {
    let out = Command::new(common::bin()).args(["schema", "check", "--dir"]).arg(dir).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write(dir: &Path, ty: &str, versions: &[Value], policy: Option<&str>) {
    let d = dir.join(ty);
    std::fs::create_dir_all(&d).unwrap();
    for (i, v) in versions.iter().enumerate() {
        std::fs::write(d.join(format!("{}.json", i + 1)), v.to_string()).unwrap();
    }
    if let Some(p) = policy {
        std::fs::write(d.join("compatibility"), p).unwrap();
    }
}

fn base() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "claim_id": {"type": "string", "maxLength": 20},
            "amount": {"type": "number"},
            "channel": {"type": "string", "enum": ["web", "phone"]}
        },
        "required": ["claim_id"],
        "additionalProperties": false
    })
}

#[test]
fn the_fixture_evolutions_are_compatible() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemas");
    let (code, out) = check(&dir);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn each_incompatible_change_is_refused_with_rule_and_path() {
    type Case = (&'static str, Box<dyn Fn(&mut Value)>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        ("required_added", Box::new(|v| v["required"] = json!(["claim_id", "amount"])), "REQUIRED", "#/"),
        (
            "type_narrowed",
            Box::new(|v| v["properties"]["amount"]["type"] = json!("integer")),
            "TYPE_NARROWED",
            "#/properties/amount",
        ),
        (
            "type_changed",
            Box::new(|v| v["properties"]["amount"]["type"] = json!("string")),
            "TYPE_CHANGED",
            "#/properties/amount",
        ),
        (
            "enum_narrowed",
            Box::new(|v| v["properties"]["channel"]["enum"] = json!(["web"])),
            "ENUM_ARRAY_NARROWED",
            "#/properties/channel",
        ),
        (
            "max_length_decreased",
            Box::new(|v| v["properties"]["claim_id"]["maxLength"] = json!(10)),
            "MAX_LENGTH_DECREASED",
            "#/properties/claim_id",
        ),
        (
            "property_removed_closed",
            Box::new(|v| {
                v["properties"].as_object_mut().unwrap().remove("channel");
            }),
            "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
            "#/properties/channel",
        ),
        (
            "required_with_default",
            Box::new(|v| {
                v["properties"]["currency"] = json!({"type": "string", "default": "EUR"});
                v["required"] = json!(["claim_id", "currency"]);
            }),
            "REQUIRED",
            "#/",
        ),
    ];
    for (name, change, rule, path) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut v2 = base();
        change(&mut v2);
        write(dir.path(), "Claim", &[base(), v2], None);
        let (code, out) = check(dir.path());
        assert_eq!(code, 1, "{name} must be refused:\n{out}");
        assert!(out.contains(rule), "{name}: expected rule {rule}:\n{out}");
        assert!(out.contains(path), "{name}: expected path {path}:\n{out}");
    }
}

#[test]
fn adding_an_optional_property_is_backward_compatible_and_policy_none_allows_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mut v2 = base();
    v2["properties"]["note"] = json!({"type": "string"});
    write(dir.path(), "Claim", &[base(), v2], None);
    let (code, out) = check(dir.path());
    assert_eq!(code, 0, "{out}");

    let dir = tempfile::tempdir().unwrap();
    let mut v2 = base();
    v2["properties"]["amount"]["type"] = json!("string");
    write(dir.path(), "Claim", &[base(), v2], Some("none"));
    assert_eq!(check(dir.path()).0, 0);
}
