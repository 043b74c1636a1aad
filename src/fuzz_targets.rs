//! The bodies of the cargo-fuzz targets in `fuzz/`, kept in the library so
//! that `tests/fuzz_regressions.rs` runs exactly the same code over the
//! committed corpus and regression inputs with a stable toolchain.
//!
//! Each function takes any bytes and panics only when an invariant breaks:
//! a panic inside the code under test, or a round trip that is not stable.
//! Inputs the code under test rejects (an `Err`) are fine.

use std::path::Path;

use serde_json::Value;

use crate::event::{Event, Headers, Record, TraceParent, STRUCTURED_CONTENT_TYPE};

/// `Headers::from_bytes` on a stored buffer of either format: iteration,
/// lookups, sizes, and the stored form read back.
pub fn headers(data: &[u8]) {
    let h = Headers::from_bytes(data.to_vec());
    let pairs: Vec<(&str, &[u8])> = h.iter().collect();
    assert_eq!(h.len(), pairs.len(), "len() disagrees with iter()");
    assert_eq!(h.is_empty(), pairs.is_empty(), "is_empty() disagrees with iter()");
    let sum: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(h.byte_len(), sum, "byte_len() disagrees with iter()");

    // `get` returns the first header of that name, well-known (stored as a
    // code, or spelled out) or not.
    let fixed = ["content-type", "ce_id", "ce_traceparent", "ce_dloffset", "x-custom", ""];
    let seen = pairs.iter().map(|(k, _)| *k).take(16);
    for name in fixed.into_iter().chain(seen) {
        let want = pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert_eq!(h.get(name), want, "get({name:?})");
    }

    // decode(encode(decode(x))) == decode(x).
    let stored = h.as_bytes();
    let again = Headers::from_bytes(stored.to_vec());
    assert_eq!(again.as_bytes(), stored, "the stored form changes when read back");
    assert_eq!(again.iter().collect::<Vec<_>>(), pairs, "headers change when read back");
    // Known and reported: `Headers` compares its buffers, and an empty one
    // may be held as no bytes (`Headers::new()`, or what a damaged or
    // format-1 buffer without entries decodes to) or as the magic alone (what
    // `as_bytes()` gives for those and `from_bytes` keeps), so
    // `Headers::new() != Headers::from_bytes(Headers::new().as_bytes().to_vec())`.
    // Both are empty and store the same bytes (checked above); every
    // non-empty value must compare equal.
    if !(h.is_empty() && again.is_empty()) {
        assert_eq!(again, h, "headers compare unequal after a round trip");
    }

    // The same pairs pushed one by one read back the same.
    let rebuilt = Headers::from_pairs(pairs.iter().copied());
    assert_eq!(rebuilt.iter().collect::<Vec<_>>(), pairs, "from_pairs(iter()) differs");
    let rebuilt_back = Headers::from_bytes(rebuilt.as_bytes().to_vec());
    assert_eq!(rebuilt_back.iter().collect::<Vec<_>>(), pairs, "from_pairs' stored form differs");
}

/// The record that [`event_record`] decodes, built from fuzz input:
///
/// ```text
/// byte 0          flags: bit 0 structured mode, bit 1 the first line is the key
/// header lines    `name:value`, one per line (a line without `:` is a name
///                 with an empty value); in structured mode they follow a
///                 `content-type: application/cloudevents+json` header
/// an empty line
/// the value       everything after it, as bytes
/// ```
///
/// Header values are bytes; names are read as UTF-8, lossily, as
/// `Headers::from_bytes` repairs a stored name. No input is refused.
pub fn record_from_fuzz_input(data: &[u8]) -> Record {
    let Some((&flags, rest)) = data.split_first() else { return Record::default() };
    let structured = flags & 1 != 0;
    let keyed = flags & 2 != 0;
    let (head, value) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let key = if keyed { Some(lines.next().unwrap_or_default().to_vec()) } else { None };
    let mut headers = Headers::new();
    if structured {
        headers.push("content-type", STRUCTURED_CONTENT_TYPE.as_bytes());
    }
    for line in lines {
        let (name, v) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &[][..]),
        };
        headers.push(&String::from_utf8_lossy(name), v);
    }
    Record { key, headers, value: value.to_vec() }
}

/// `Event::from_record` in binary or structured mode; a record that decodes
/// must survive `to_record` (binary mode) and `to_structured`, and one round
/// trip must reach a fixed point.
pub fn event_record(data: &[u8]) {
    let rec = record_from_fuzz_input(data);
    let _ = rec.size();
    let Ok(first) = Event::from_record(&rec) else { return };
    let _ = first.partition_key();

    let rec2 = first.to_record();
    let second = Event::from_record(&rec2).unwrap_or_else(|e| {
        panic!("a decoded event does not decode after to_record(): {e}\n  event: {first:?}\n  record: {rec2:?}")
    });
    let rec3 = second.to_record();
    let third = Event::from_record(&rec3).unwrap_or_else(|e| {
        panic!("a re-encoded event does not decode after to_record(): {e}\n  event: {second:?}\n  record: {rec3:?}")
    });
    // The data is compared apart: serde_json (without its `float_roundtrip`
    // feature) may read a float's shortest form back one unit in the last
    // place off, so a number in the data can move that much per round trip.
    assert_data_close(&third.data, &second.data);
    let (mut third, mut second_bare) = (third, second.clone());
    (third.data, second_bare.data) = (Value::Null, Value::Null);
    assert_eq!(third, second_bare, "to_record/from_record is not stable after one round trip");
    assert_eq!(rec3.key, rec2.key, "to_record's key is not stable after one round trip");
    assert_eq!(rec3.headers, rec2.headers, "to_record's headers are not stable after one round trip");

    // Structured mode keeps every attribute (not the record's key, which is
    // no attribute), so it is compared in that form.
    let mut structured = second.to_structured();
    let serde_json::Value::Object(map) = structured.clone() else { panic!("to_structured() is not an object") };
    let back = Event::from_structured(map)
        .unwrap_or_else(|e| panic!("to_structured() does not decode: {e}\n  event: {second:?}"));
    let mut back = back.to_structured();
    let (Some(a), Some(b)) = (back.get_mut("data"), structured.get_mut("data")) else { panic!("no data member") };
    assert_data_close(a, b);
    (*a, *b) = (Value::Null, Value::Null);
    assert_eq!(back, structured, "to_structured/from_structured changes the event");
}

/// `a` and `b` are the same JSON, but for floats a few units in the last place apart.
fn assert_data_close(a: &Value, b: &Value) {
    fn close(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()).max(f64::MIN_POSITIVE)
            }
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
            }
            _ => a == b,
        }
    }
    assert!(close(a, b), "the data changes in a round trip:\n  {a}\n  {b}");
}

/// `TraceParent` from text; what parses prints back to itself.
pub fn traceparent(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(t) = text.parse::<TraceParent>() else { return };
    let printed = t.to_string();
    assert_eq!(printed.as_bytes(), &t.encode()[..], "Display and encode() differ");
    assert_eq!(printed.len(), 55, "{printed:?}");
    let back: TraceParent =
        printed.parse().unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) does not parse: {e}"));
    assert_eq!(back, t, "{text:?} → {printed:?} parses to another value");
}

/// `config::load_str` on any text: `Ok` or `Err`, never a panic; an `Err`
/// names at least one problem, and an `Ok` has absolute paths.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match crate::config::load_str(text, Path::new("/nonexistent")) {
        Ok(c) => {
            assert!(c.data_dir.is_absolute(), "data_dir {:?}", c.data_dir);
            assert!(c.schemas.is_absolute(), "schemas {:?}", c.schemas);
            for (name, m) in &c.models {
                assert!(m.path.is_absolute(), "models.{name}.path {:?}", m.path);
            }
        }
        Err(errors) => assert!(!errors.is_empty(), "an Err without any problem listed"),
    }
}
