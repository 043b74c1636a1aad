//! Escaping text from the bus before it reaches a terminal. Headers, keys,
//! values and dead-letter reasons are written by whoever published the
//! record; an ESC in one is an escape sequence that can rewrite the screen,
//! retitle the window or hide lines, and a bidi override reorders what is
//! shown. Printed escaped, such text reads as what it is.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal raw: C0 and C1 controls and DEL,
/// bidi embeddings, overrides and isolates, and the line and paragraph
/// separators (a line break a table does not expect).
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// `s` for a text table: each unsafe character as `\u{1b}`.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    escape_with(s, |out, c| out.push_str(&format!("\\u{{{:x}}}", c as u32)))
}

/// A line of JSON with each unsafe character that the serialiser left raw
/// (it escapes only U+0000–U+001F) written as a JSON `\uXXXX` escape: they
/// can only stand inside strings, so the JSON means exactly what it did.
pub fn escape_control_json(line: &str) -> Cow<'_, str> {
    // Every unsafe character is in the Basic Multilingual Plane: one escape each.
    escape_with(line, |out, c| out.push_str(&format!("\\u{:04x}", c as u32)))
}

fn escape_with(s: &str, escape: impl Fn(&mut String, char)) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_ascii_and_unicode_controls_for_tables() {
        assert_eq!(escape_control("a\u{1b}]0;pwned\u{7}b"), "a\\u{1b}]0;pwned\\u{7}b");
        assert_eq!(escape_control("x\ny\u{9b}2J\u{7f}"), "x\\u{a}y\\u{9b}2J\\u{7f}");
        assert_eq!(escape_control("evil\u{202e}gnp.exe"), "evil\\u{202e}gnp.exe");
        assert!(matches!(escape_control("plain, ünïcode ✓ \\u{1b}"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_escapes_keep_the_value() {
        let value = "a\u{1b}b\u{9b}c\u{202e}d\u{7f}";
        let line = serde_json::json!({ "v": value }).to_string();
        let escaped = escape_control_json(&line);
        assert_eq!(escaped, r#"{"v":"a\u001bb\u009bc\u202ed\u007f"}"#);
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back["v"], value);
    }
}
