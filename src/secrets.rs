//! Values the config took from the environment (`${NAME}`), and scrubbing
//! them out of messages. Secrets stay out of the config file by living in
//! the environment; they must not then come back out through an error that
//! quotes a value (a bad duration, a type error, librdkafka refusing a
//! property). [`crate::config`] scrubs its own errors with the values of one
//! load and [`remember`]s them for the process, so errors raised later (the
//! Kafka client's, at start-up) are scrubbed with [`scrub`] too.

use std::borrow::Cow;
use std::sync::Mutex;

/// Shorter values are too likely to be ordinary words of a message (`"SSL"`
/// from `${PROTOCOL}`), and scrubbing them would mangle messages for nothing.
const MIN_LEN: usize = 3;

/// What replaces a quoted fragment of a secret.
const REDACTED: &str = "<redacted>";

/// Environment values substituted into a config, with their variable names.
/// Not `Debug`: printing it would print the values.
#[derive(Default, Clone)]
pub struct Secrets {
    /// (replacement, value), longest value first, so a secret that
    /// contains another is replaced whole.
    known: Vec<(String, String)>,
}

impl Secrets {
    /// Records that `${name}` was replaced by `value`.
    pub fn add(&mut self, name: &str, value: &str) {
        if value.chars().count() >= MIN_LEN {
            self.insert(format!("${{{name}}}"), value);
        }
    }

    fn insert(&mut self, replacement: String, value: &str) {
        if self.known.iter().any(|(_, v)| v == value) {
            return;
        }
        self.known.push((replacement, value.to_string()));
        self.known.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// `text` with every secret replaced by `${NAME}`, which still tells the
    /// reader where the value came from. A quoted fragment of a secret
    /// (a parser quoting the part it choked on, `unknown unit "sekrit"`)
    /// is replaced by `<redacted>`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (replacement, value) in &self.known {
            if value.chars().count() >= MIN_LEN && out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), replacement));
            }
        }
        match self.redact_quoted_fragments(&out) {
            Some(redacted) => Cow::Owned(redacted),
            None => out,
        }
    }

    /// Rewrites `"…"` and `` `…` `` segments that are part of a secret;
    /// None when there are none.
    fn redact_quoted_fragments(&self, text: &str) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        let mut rest = text;
        while let Some((start, quote)) = rest.char_indices().find(|(_, c)| matches!(c, '"' | '`')) {
            let Some(len) = rest[start + 1..].find(quote) else { break };
            let inner = &rest[start + 1..start + 1 + len];
            out.push_str(&rest[..=start]);
            if self.is_fragment(inner) {
                out.push_str(REDACTED);
                changed = true;
            } else {
                out.push_str(inner);
            }
            out.push(quote);
            rest = &rest[start + len + 2..];
        }
        out.push_str(rest);
        changed.then_some(out)
    }

    /// A quoted value, or a part of one long enough to mean something.
    fn is_fragment(&self, s: &str) -> bool {
        !s.is_empty() && self.known.iter().any(|(_, v)| v == s || (s.chars().count() >= MIN_LEN && v.contains(s)))
    }
}

/// `text` with `value`, and any quoted part of it, replaced by `<redacted>`:
/// for a value that may be sensitive although no variable named it (a
/// property value librdkafka quotes back).
pub fn redact(text: &str, value: &str) -> String {
    let mut one = Secrets::default();
    one.insert(REDACTED.to_string(), value);
    one.scrub(text).into_owned()
}

/// Every secret any config load in this process substituted.
static PROCESS: Mutex<Secrets> = Mutex::new(Secrets { known: Vec::new() });

/// Adds `found` to the process's secrets, for [`scrub`].
pub fn remember(found: &Secrets) {
    let mut all = PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    for (replacement, value) in &found.known {
        all.insert(replacement.clone(), value);
    }
}

/// `text` without any secret a config load substituted (see [`Secrets::scrub`]).
pub fn scrub(text: &str) -> Cow<'_, str> {
    let all = PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    if all.is_empty() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(all.scrub(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        let mut s = Secrets::default();
        s.add("PASSWORD", "7sekrit-Zq93");
        s.add("SHORT", "ab");
        s
    }

    #[test]
    fn replaces_whole_values_with_the_variable_name() {
        let text = "expected a duration like \"5ms\", got \"7sekrit-Zq93\"";
        assert_eq!(secrets().scrub(text), "expected a duration like \"5ms\", got \"${PASSWORD}\"");
    }

    #[test]
    fn redacts_quoted_fragments_of_a_secret() {
        let text = "got \"${PASSWORD}\" (unknown time unit \"sekrit\", supported units: ns, us)";
        assert_eq!(
            secrets().scrub(text),
            "got \"${PASSWORD}\" (unknown time unit \"<redacted>\", supported units: ns, us)"
        );
    }

    #[test]
    fn redacts_a_value_known_to_be_sensitive() {
        let text = "Invalid value \"x-y\" for configuration property \"p\": x-y,zzz";
        assert_eq!(
            redact(text, "x-y,zzz"),
            "Invalid value \"<redacted>\" for configuration property \"p\": <redacted>"
        );
        assert_eq!(
            redact("Invalid value for \"p\": \"ab\" (ab)", "ab"),
            "Invalid value for \"p\": \"<redacted>\" (ab)"
        );
    }

    #[test]
    fn the_process_scrubs_what_a_load_found() {
        let mut found = Secrets::default();
        found.add("PROCESS_TEST_SECRET", "Lq72-zzPw-91");
        remember(&found);
        assert_eq!(scrub("mechanism: Lq72-zzPw-91"), "mechanism: ${PROCESS_TEST_SECRET}");
    }

    #[test]
    fn leaves_short_values_and_unrelated_text_alone() {
        let text = "invalid type: string \"ab\", expected u32 at `partitions`";
        assert!(matches!(secrets().scrub(text), Cow::Borrowed(_)));
    }
}
