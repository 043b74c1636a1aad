use super::*;
use serde_json::json;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The committed fixtures. Found through the manifest in this crate; when
/// this file is compiled into another crate by `#[path]` (a scratch crate),
/// beside this source file instead.
fn fixtures() -> PathBuf {
    let by_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemas");
    if by_manifest.is_dir() {
        return by_manifest;
    }
    Path::new(file!()).ancestors().nth(3).unwrap_or(Path::new(".")).join("tests/fixtures/schemas")
}

fn registry() -> SchemaRegistry {
    SchemaRegistry::load(&fixtures()).expect("fixtures load")
}

/// A directory of schema files for one test, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("modelbus-schema-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
        self
    }

    fn load(&self) -> Result<SchemaRegistry, SchemaError> {
        SchemaRegistry::load(&self.0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn load_err(s: &Scratch) -> (String, PathBuf) {
    match s.load() {
        Err(e @ SchemaError::Load { .. }) => {
            assert_eq!((e.class(), e.code()), (ErrorClass::Fatal, "schema_load"));
            let SchemaError::Load { path, .. } = &e else { unreachable!() };
            (e.to_string(), path.clone())
        }
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn loads_fixtures_and_reports_versions() {
    let r = registry();
    assert_eq!(r.types().collect::<Vec<_>>(), ["ClaimCreated", "ClaimScored"]);
    assert_eq!(r.latest_version("ClaimCreated"), Some(2));
    assert_eq!(r.latest_version("Nope"), None);
    assert_eq!(r.versions("ClaimScored"), [1, 2]);
    assert_eq!(r.policy("ClaimCreated"), Some(Compatibility::Backward));
    assert_eq!(r.policy("ClaimScored"), Some(Compatibility::Forward));
    assert!(r.check_all().is_empty(), "{:?}", r.check_all());
}

#[test]
fn debug_names_versions_but_not_schemas() {
    let d = format!("{:?}", registry());
    assert!(d.contains("ClaimCreated") && d.contains("[1, 2] backward"), "{d}");
    assert!(!d.contains("claim_id"), "{d}");
}

#[test]
fn newest_version_validates_when_dataschema_names_none() {
    let r = registry();
    let ok = json!({"claim_id": "c1", "amount": 10, "currency": "EUR"});
    assert_eq!(r.validate("ClaimCreated", None, &ok).unwrap(), 2);
    assert_eq!(r.validate("ClaimCreated", Some("https://example.com/claims"), &ok).unwrap(), 2);
}

#[test]
fn dataschema_picks_the_version() {
    let r = registry();
    let v2_only = json!({"claim_id": "c1", "amount": 10, "currency": "EUR"});
    assert_eq!(r.validate("ClaimCreated", Some("schemas/ClaimCreated/2.json"), &v2_only).unwrap(), 2);
    let e = r.validate("ClaimCreated", Some("https://x.example/ClaimCreated/1"), &v2_only).unwrap_err();
    assert_eq!((e.class(), e.code()), (ErrorClass::Permanent, "schema_violation"));
    assert!(matches!(e, SchemaError::Violation { version: 1, .. }), "{e}");
}

#[test]
fn dataschema_version_parsing_is_lenient() {
    for (uri, want) in [
        ("schemas/ClaimCreated/2.json", Some(2)),
        ("https://example.com/schemas/ClaimCreated/12", Some(12)),
        ("/ClaimCreated/3/", Some(3)),
        ("ClaimCreated/v4.json?rev=1#frag", Some(4)),
        ("7", Some(7)),
        ("https://example.com/schemas/ClaimCreated", None),
        ("https://example.com/schemas/ClaimCreated.json", None),
        ("schemas/ClaimCreated/2.5.json", None),
        ("", None),
    ] {
        assert_eq!(dataschema_version(uri), want, "{uri}");
    }
    let uri = SchemaRegistry::dataschema_uri("ClaimCreated", 2);
    assert_eq!(uri, "schemas/ClaimCreated/2.json");
    assert_eq!(dataschema_version(&uri), Some(2));
}

#[test]
fn unknown_type_and_version_are_permanent() {
    let r = registry();
    let e = r.validate("Nope", None, &json!({})).unwrap_err();
    assert_eq!((e.class(), e.code()), (ErrorClass::Permanent, "unknown_event_type"));
    let e = r.validate("ClaimCreated", Some("schemas/ClaimCreated/9.json"), &json!({})).unwrap_err();
    assert_eq!((e.class(), e.code()), (ErrorClass::Permanent, "unknown_schema_version"));
    assert!(e.to_string().contains("versions 1, 2"), "{e}");
    let e = r.validate("ClaimCreated", Some("x/99999999999.json"), &json!({})).unwrap_err();
    assert_eq!(e.code(), "unknown_schema_version");
}

#[test]
fn violation_lists_reasons_with_instance_paths() {
    let r = registry();
    let e = r.validate("ClaimCreated", None, &json!({"claim_id": "c1", "amount": "abc"})).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(r#"/amount: "abc" is not of type "number""#), "{msg}");
    assert!(msg.starts_with("ClaimCreated data does not match schema version 2"), "{msg}");
    let e = r.validate("ClaimCreated", None, &json!({"amount": 1})).unwrap_err();
    assert!(e.to_string().contains(r#"(root): "claim_id" is a required property"#), "{e}");
}

#[test]
fn violation_reasons_are_capped() {
    let s = Scratch::new();
    s.write("Many/1.json", r#"{"type": "array", "items": {"type": "integer"}}"#);
    let r = s.load().unwrap();
    let data = Value::Array((0..25).map(|i| json!(format!("s{i}"))).collect());
    match r.validate("Many", None, &data).unwrap_err() {
        SchemaError::Violation { reasons, more, .. } => {
            assert_eq!((reasons.len(), more), (10, 15));
            assert!(reasons[0].starts_with("/0: "), "{reasons:?}");
        }
        e => panic!("{e}"),
    }
}

#[test]
fn validate_compatible_falls_back_to_compatible_older_versions() {
    let r = registry();
    // Written by a v1 producer: no `model`. v2 requires it; v1 is forward-compatible with v2.
    let old = json!({"claim_id": "c1", "score": 0.5});
    assert_eq!(r.validate_compatible("ClaimScored", None, &old).unwrap(), 1);
    assert_eq!(r.validate("ClaimScored", None, &old).unwrap_err().code(), "schema_violation");
    let new = json!({"claim_id": "c1", "score": 0.5, "model": "m"});
    assert_eq!(r.validate_compatible("ClaimScored", None, &new).unwrap(), 2);
    // A named version is honoured as in `validate`.
    let e = r.validate_compatible("ClaimScored", Some("ClaimScored/2.json"), &old).unwrap_err();
    assert!(matches!(e, SchemaError::Violation { version: 2, .. }));
    let e = r.validate_compatible("ClaimScored", None, &json!({"score": 3})).unwrap_err();
    assert!(matches!(&e, SchemaError::Violation { version: 2, also_tried, .. } if also_tried == &[1]), "{e}");
}

#[test]
fn validate_compatible_skips_incompatible_versions() {
    let s = Scratch::new();
    s.write(
        "T/1.json",
        r#"{"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}"#,
    )
    .write(
        "T/2.json",
        r#"{"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false}"#,
    );
    let r = s.load().unwrap();
    assert_eq!(r.validate_compatible("T", None, &json!({"a": 1})).unwrap(), 2);
    assert_eq!(r.validate_compatible("T", None, &json!({"a": "x"})).unwrap_err().code(), "schema_violation");
    let found = r.check_all();
    assert_eq!(found.len(), 1, "{found:?}");
    let (ty, v, inc) = &found[0];
    assert_eq!((ty.as_str(), *v, inc.rule, inc.path.as_str()), ("T", 2, "TYPE_CHANGED", "#/properties/a"));
    assert!(inc.message.contains("version 1"), "{}", inc.message);
    // Under `none` nothing is compatible, so the older version is never tried.
    s.write("T/compatibility", "none\n");
    let r = s.load().unwrap();
    assert!(r.check_all().is_empty());
    assert_eq!(r.validate_compatible("T", None, &json!({"a": "x"})).unwrap_err().code(), "schema_violation");
}

#[test]
fn check_all_uses_every_predecessor_when_transitive() {
    let s = Scratch::new();
    let closed =
        |props: &str| format!(r#"{{"type": "object", "properties": {{{props}}}, "additionalProperties": false}}"#);
    s.write("T/1.json", &closed(r#""a": {}, "b": {}"#))
        .write("T/2.json", &closed(r#""a": {}"#))
        .write("T/3.json", &closed(r#""a": {}"#));
    let rules = |r: SchemaRegistry| r.check_all().into_iter().map(|(_, v, i)| (v, i.rule, i.path)).collect::<Vec<_>>();
    let removed = |v| (v, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/properties/b".to_owned());
    assert_eq!(rules(s.load().unwrap()), [removed(2)]);
    s.write("T/compatibility", "BACKWARD_TRANSITIVE");
    assert_eq!(rules(s.load().unwrap()), [removed(2), removed(3)]);
}

#[test]
fn load_errors_are_fatal_and_name_the_file() {
    let s = Scratch::new();
    s.write("T/1.json", "{ not json");
    let (msg, path) = load_err(&s);
    assert!(path.ends_with("T/1.json") && msg.contains("1.json") && msg.contains("not JSON"), "{msg}");

    let s = Scratch::new();
    s.write("T/1.json", r#"{"type": 5}"#);
    let (msg, path) = load_err(&s);
    assert!(path.ends_with("T/1.json") && msg.contains("invalid JSON Schema"), "{msg}");

    let s = Scratch::new();
    s.write("T/1.json", r#"{"$schema": "http://json-schema.org/draft-07/schema#"}"#);
    assert!(load_err(&s).0.contains("2020-12"));

    let s = Scratch::new();
    s.write("T/1.json", "{}").write("T/compatibility", "sideways");
    let (msg, path) = load_err(&s);
    assert!(path.ends_with("T/compatibility") && msg.contains("sideways"), "{msg}");

    let s = Scratch::new();
    s.write("T/1.json", "{}").write("T/v2.json", "{}");
    assert!(load_err(&s).1.ends_with("T/v2.json"));

    let s = Scratch::new();
    s.write("T/01.json", "{}");
    assert!(load_err(&s).1.ends_with("T/01.json"));

    let s = Scratch::new();
    s.write("T/README.md", "no schemas here");
    assert!(load_err(&s).1.ends_with("T"));

    let missing = std::env::temp_dir().join("modelbus-schema-test-does-not-exist");
    let e = SchemaRegistry::load(&missing).unwrap_err();
    assert_eq!(e.code(), "schema_load");
    assert!(e.to_string().contains("modelbus-schema-test-does-not-exist"), "{e}");
}

#[test]
fn external_refs_fail_at_load_not_at_validation() {
    let s = Scratch::new();
    s.write("T/1.json", r#"{"$ref": "https://example.com/other.json"}"#);
    assert!(load_err(&s).1.ends_with("T/1.json"));
}

#[test]
fn ignores_hidden_dirs_and_stray_files() {
    let s = Scratch::new();
    s.write("T/1.json", "{}").write(".git/1.json", "nope").write("README.md", "x").write("T/notes.txt", "x");
    assert_eq!(s.load().unwrap().types().collect::<Vec<_>>(), ["T"]);
}

#[test]
fn registry_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SchemaRegistry>();
    assert_send_sync::<SchemaError>();
}
