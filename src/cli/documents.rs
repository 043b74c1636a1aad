//! JSON documents from input that arrives a line at a time (`publish` reads
//! a pipe as it is written): JSON lines, or documents spread over several
//! lines (`jq .` pretty-prints), each reported with the number of the line
//! it starts on, so that an invalid one can be named and the rest go on.

use serde_json::Value;

/// A document, or why its lines are not one, with the line it starts on.
pub type Document = (usize, Result<Value, String>);

/// Collects lines until they close a document. A line whose brackets are
/// balanced is parsed at once; one that leaves `{` or `[` open waits for the
/// lines that close it. Counting brackets (outside strings) keeps this
/// linear: parsing the growing text after every line would not be.
#[derive(Default)]
pub struct Documents {
    /// Lines of a document still open: (line number, text).
    open: Vec<(usize, String)>,
    depth: i64,
}

impl Documents {
    /// Feeds one line, without its newline; appends what it completes to `out`.
    pub fn push(&mut self, number: usize, line: String, out: &mut Vec<Document>) {
        // A `{` in the first column starts a document: pretty printers
        // indent what they nest. So a line cut short (a producer that died
        // mid-line) is refused when the next document starts, instead of
        // holding back every line after it.
        if !self.open.is_empty() && line.starts_with('{') {
            self.abandon(&format!("the document does not end before line {number}"), out);
        }
        if self.open.is_empty() && line.trim().is_empty() {
            return;
        }
        let (depth, in_string) = scan(&line, self.depth);
        self.depth = depth;
        self.open.push((number, line));
        // A JSON string cannot hold a raw newline: one open at the end of a
        // line is an error, found by parsing now.
        if depth > 0 && !in_string {
            return;
        }
        let lines = std::mem::take(&mut self.open);
        self.depth = 0;
        let text = lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n");
        match serde_json::from_str(&text) {
            Ok(v) => out.push((lines[0].0, Ok(v))),
            Err(e) => {
                let reason = reason(&e, lines[0].0);
                self.refuse_first(lines, reason, out)
            }
        }
    }

    /// Input ended: a document still open is incomplete.
    pub fn finish(&mut self, out: &mut Vec<Document>) {
        self.abandon("input ended inside this document", out);
    }

    /// Refuses the open document's first line, and reads the lines after it
    /// again, until nothing is open.
    fn abandon(&mut self, reason: &str, out: &mut Vec<Document>) {
        while !self.open.is_empty() {
            let lines = std::mem::take(&mut self.open);
            self.depth = 0;
            self.refuse_first(lines, reason.to_string(), out);
        }
    }

    /// Reports the first of `lines` invalid and reads the others again on
    /// their own: a stray `{` must not take the valid lines after it down too.
    fn refuse_first(&mut self, mut lines: Vec<(usize, String)>, reason: String, out: &mut Vec<Document>) {
        let (first, _) = lines.remove(0);
        out.push((first, Err(reason)));
        for (number, line) in lines {
            self.push(number, line, out);
        }
    }
}

/// serde_json's message, with its position counted in input lines (it
/// counts from the document's first line).
fn reason(e: &serde_json::Error, first_line: usize) -> String {
    let message = e.to_string();
    let what = message.rsplit_once(" at line ").map_or(message.as_str(), |(what, _)| what);
    match e.line() {
        0 | 1 => format!("{what} at column {}", e.column()),
        n => format!("{what} at line {}, column {}", first_line + n - 1, e.column()),
    }
}

/// The bracket depth after `line`, starting from `depth`, and whether the
/// line ends inside a string.
fn scan(line: &str, mut depth: i64) -> (i64, bool) {
    let (mut in_string, mut escaped) = (false, false);
    for b in line.bytes() {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'{' | b'[') => depth += 1,
            (false, b'}' | b']') => depth -= 1,
            (false, _) => {}
        }
    }
    (depth, in_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<(usize, Result<Value, String>)> {
        let mut docs = Documents::default();
        let mut out = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            docs.push(i + 1, line.to_string(), &mut out);
        }
        docs.finish(&mut out);
        out
    }

    fn lines_of(docs: &[Document]) -> Vec<(usize, bool)> {
        docs.iter().map(|(n, d)| (*n, d.is_ok())).collect()
    }

    #[test]
    fn json_lines_and_pretty_documents() {
        let docs = split("{\"a\": 1}\n\n{\n  \"b\": [1,\n 2],\n  \"s\": \"}{\\\"\"\n}\n{\"c\": 3}");
        assert_eq!(lines_of(&docs), vec![(1, true), (3, true), (8, true)]);
        assert_eq!(docs[1].1.as_ref().unwrap()["s"], "}{\"");
    }

    #[test]
    fn an_invalid_line_does_not_take_the_next_ones_with_it() {
        let docs = split("{\"a\": \nnot json\n{\"b\": 2}\n{\"c\": \"open\n{\"d\": 4}\n{\"e\": ");
        assert_eq!(lines_of(&docs), vec![(1, false), (2, false), (3, true), (4, false), (5, true), (6, false)]);
        assert!(docs[5].1.as_ref().unwrap_err().contains("input ended"), "{docs:?}");
        // Cut short, then more lines: refused when the next one starts.
        let docs = split("{\"a\": [1,\n{\"b\": 2}\n  [\n{\"c\": 3}");
        assert_eq!(lines_of(&docs), vec![(1, false), (2, true), (3, false), (4, true)]);
        assert!(docs[0].1.as_ref().unwrap_err().contains("before line 2"), "{docs:?}");
    }

    #[test]
    fn reasons_name_the_input_line() {
        let docs = split("{\"a\": 1,\n  \"b\": nope\n}");
        assert_eq!(docs[0].1.as_ref().unwrap_err(), "expected ident at line 2, column 9");
        let docs = split("\n\n{\"a\" 1}");
        assert_eq!(docs[0], (3, Err("expected `:` at column 6".into())));
    }
}
