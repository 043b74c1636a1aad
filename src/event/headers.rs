//! Record headers kept in their stored form: one buffer that the embedded
//! bus writes and reads without conversion.
//!
//! Why one buffer and not `Vec<(String, Vec<u8>)>`: a CloudEvent in binary
//! mode carries a dozen or more headers, so that shape costs two
//! allocations per header on every fetch, decode and result, about fifty
//! per event. Lookups walk the buffer instead (a dozen short entries).
//!
//! The form (format 2): the two bytes [`MAGIC`], then for each header a name
//! and a value. A name is one byte: a code `1..=127` for one of the
//! [`WELL_KNOWN`] names, or `0` followed by a length and the name's bytes.
//! A value is a length and its bytes. Lengths are LEB128 varints.
//!
//! Why codes and varints: a result record carries sixteen headers whose
//! names and fixed-width lengths were 300 of its 690 stored bytes, and
//! every stored byte is written to the WAL, copied back by the checkpoint
//! and read again by the next consumer. Format 2 stores a result's headers
//! in about 300 bytes instead of 590. Short lengths, codes and the magic
//! are all ASCII bytes, so an all-ASCII check of the buffer still proves
//! every name and value is UTF-8 (see `Event::from_record`).
//!
//! Format 1 (a u32 count, then u32 length-prefixed names and values) is
//! still read: a buffer without the magic is read as format 1 and
//! re-encoded, so data directories written before format 2 stay readable.
//!
//! Values are bytes, so a record travels untouched even when not UTF-8.
//! Names are UTF-8 (Kafka's are strings); a stored name that is not is
//! repaired lossily when the buffer is read back.

use std::fmt;

#[derive(Clone, Default)]
pub struct Headers {
    /// Empty (no headers), or [`MAGIC`] followed by well-formed entries.
    buf: Vec<u8>,
}

/// The first bytes of a format-2 buffer. As a format-1 count they would
/// mean 18,559 or more headers, which no format-1 record had.
const MAGIC: [u8; 2] = [0x7F, b'H'];

/// Names stored as one-byte codes: code `i + 1` is `WELL_KNOWN[i]`. This
/// list is part of the storage format: append only, never reorder or
/// remove, and at most 127 names.
const WELL_KNOWN: &[&str] = &[
    "content-type",
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "ce_subject",
    "ce_datacontenttype",
    "ce_dataschema",
    "ce_traceparent",
    "ce_tracestate",
    "ce_partitionkey",
    "ce_causationid",
    "ce_correlationid",
    "ce_modelname",
    "ce_modelversion",
    "ce_worker",
    "ce_inputschemaversion",
    "ce_replaycount",
    "ce_dlid",
    "ce_dlstage",
    "ce_dlclass",
    "ce_dlcode",
    "ce_dlreason",
    "ce_dlattempts",
    "ce_dlfirstfailure",
    "ce_dllastfailure",
    "ce_dlworker",
    "ce_dlgroup",
    "ce_dlmodel",
    "ce_dlmodelversion",
    "ce_dltopic",
    "ce_dlpartition",
    "ce_dloffset",
];

/// The code of a well-known name, or 0. A `match` on literals rather than
/// a search of [`WELL_KNOWN`]: the compiler compares lengths first and
/// then inline words, where the search called `memcmp` for every
/// candidate of the same length (it ran for every header of every result).
/// A test keeps the two in step.
fn code_of(name: &str) -> u8 {
    match name {
        "content-type" => 1,
        "ce_specversion" => 2,
        "ce_id" => 3,
        "ce_source" => 4,
        "ce_type" => 5,
        "ce_time" => 6,
        "ce_subject" => 7,
        "ce_datacontenttype" => 8,
        "ce_dataschema" => 9,
        "ce_traceparent" => 10,
        "ce_tracestate" => 11,
        "ce_partitionkey" => 12,
        "ce_causationid" => 13,
        "ce_correlationid" => 14,
        "ce_modelname" => 15,
        "ce_modelversion" => 16,
        "ce_worker" => 17,
        "ce_inputschemaversion" => 18,
        "ce_replaycount" => 19,
        "ce_dlid" => 20,
        "ce_dlstage" => 21,
        "ce_dlclass" => 22,
        "ce_dlcode" => 23,
        "ce_dlreason" => 24,
        "ce_dlattempts" => 25,
        "ce_dlfirstfailure" => 26,
        "ce_dllastfailure" => 27,
        "ce_dlworker" => 28,
        "ce_dlgroup" => 29,
        "ce_dlmodel" => 30,
        "ce_dlmodelversion" => 31,
        "ce_dltopic" => 32,
        "ce_dlpartition" => 33,
        "ce_dloffset" => 34,
        _ => 0,
    }
}

fn put_varint(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// A varint at `*at`, advancing past it; None when truncated or over 32 bits.
#[inline]
fn get_varint(b: &[u8], at: &mut usize) -> Option<usize> {
    // Nearly every length is under 128: one byte.
    let first = *b.get(*at)?;
    *at += 1;
    if first < 0x80 {
        return Some(first as usize);
    }
    let mut n = u64::from(first & 0x7F);
    for shift in (7..35).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7F) << shift;
        if byte < 0x80 {
            return u32::try_from(n).ok().map(|n| n as usize);
        }
    }
    None
}

/// Equal when stored alike: an empty buffer and one holding only the
/// magic are both "no headers" (fuzzing found them unequal).
impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Headers {}

impl Headers {
    pub fn new() -> Headers {
        Headers { buf: Vec::new() }
    }

    /// Room for headers whose names and values total about `bytes`.
    pub fn with_capacity(bytes: usize) -> Headers {
        Headers { buf: Vec::with_capacity(bytes + MAGIC.len()) }
    }

    /// Builds headers from (name, value) pairs, in order.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (K, V)>) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.push(k.as_ref(), v.as_ref());
        }
        h
    }

    /// Takes a stored buffer of either format. Entries after a malformed one
    /// (a truncated or corrupt buffer) are dropped, as are never-valid buffers.
    pub fn from_bytes(buf: Vec<u8>) -> Headers {
        if !buf.starts_with(&MAGIC) {
            return Headers::from_entries(Format1::new(&buf));
        }
        let (end, names_utf8) = format2_prefix(&buf);
        if end == buf.len() && names_utf8 {
            return Headers { buf };
        }
        Headers::from_entries(Entries { buf: &buf[..end], at: MAGIC.len() }.map(|(_, k, v)| (k, v)))
    }

    /// The rare path: a buffer written before format 2, or a damaged one,
    /// re-encoded with any name that is not UTF-8 repaired.
    fn from_entries<'a>(entries: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Headers {
        let mut h = Headers::new();
        for (k, v) in entries {
            h.push(&String::from_utf8_lossy(k), v);
        }
        h
    }

    /// The stored form.
    pub fn as_bytes(&self) -> &[u8] {
        if self.buf.is_empty() {
            &MAGIC
        } else {
            &self.buf
        }
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() <= MAGIC.len()
    }

    /// Bytes of names and values (for payload limits; the same in either format).
    pub fn byte_len(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Appends a header (a name may repeat; [`Headers::get`] returns the first).
    pub fn push(&mut self, name: &str, value: &[u8]) {
        if self.buf.is_empty() {
            self.buf.extend_from_slice(&MAGIC);
        }
        let code = code_of(name);
        // One capacity check for the entry (code, two varints of at most
        // five bytes, the bytes) instead of one per piece.
        self.buf.reserve(11 + value.len() + if code == 0 { name.len() } else { 0 });
        self.buf.push(code);
        if code == 0 {
            put_varint(&mut self.buf, name.len());
            self.buf.extend_from_slice(name.as_bytes());
        }
        put_varint(&mut self.buf, value.len());
        self.buf.extend_from_slice(value);
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        // A well-known name is found by its code, without comparing name
        // bytes; `push` always codes it, but a buffer from elsewhere may
        // spell it out, and that entry counts too.
        let code = code_of(name);
        self.entries()
            .find(|(c, k, _)| (code != 0 && *c == code) || (*c == 0 && *k == name.as_bytes()))
            .map(|(_, _, v)| v)
    }

    /// Sets a header, replacing every earlier value of the same name.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        self.retain(|k, _| k != name);
        self.push(name, value);
    }

    /// Keeps only the headers for which `keep` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        if self.iter().all(|(k, v)| keep(k, v)) {
            return;
        }
        let mut out = Headers::with_capacity(self.buf.len());
        for (k, v) in self.iter() {
            if keep(k, v) {
                out.push(k, v);
            }
        }
        *self = out;
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries())
    }

    fn entries(&self) -> Entries<'_> {
        Entries { buf: &self.buf, at: MAGIC.len() }
    }
}

/// How far a format-2 buffer holds whole entries with known codes (the end
/// of the last one), and whether their literal names are all UTF-8.
fn format2_prefix(buf: &[u8]) -> (usize, bool) {
    // A buffer that is all ASCII (the usual case) has only UTF-8 names; one
    // pass over it is cheaper than checking each literal name.
    let ascii = buf.is_ascii();
    let mut entries = Entries { buf, at: MAGIC.len() };
    let (mut end, mut names_utf8) = (entries.at, true);
    // `Entries` stops at the first truncated entry or unknown code.
    while let Some((code, name, _)) = entries.next() {
        names_utf8 &= ascii || code != 0 || std::str::from_utf8(name).is_ok();
        end = entries.at;
    }
    (end, names_utf8)
}

/// Walks the entries of a format-2 buffer: (code, name bytes, value),
/// stopping at the first truncated entry or unknown code.
struct Entries<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (u8, &'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let code = *self.buf.get(self.at)?;
        self.at += 1;
        let name = if code == 0 {
            let n = get_varint(self.buf, &mut self.at)?;
            let name = self.buf.get(self.at..self.at + n)?;
            self.at += n;
            name
        } else {
            WELL_KNOWN.get(code as usize - 1)?.as_bytes()
        };
        let n = get_varint(self.buf, &mut self.at)?;
        let value = self.buf.get(self.at..self.at + n)?;
        self.at += n;
        Some((code, name, value))
    }
}

/// The entries of a format-1 buffer, up to the first malformed one.
struct Format1<'a> {
    buf: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Format1<'a> {
    fn new(buf: &'a [u8]) -> Format1<'a> {
        Format1 { buf, at: 4, left: read_u32(buf, 0).unwrap_or(0) }
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<usize> {
    let x = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
}

impl<'a> Iterator for Format1<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let kl = read_u32(self.buf, self.at)?;
        let k = self.buf.get(self.at + 4..self.at + 4 + kl)?;
        let vl = read_u32(self.buf, self.at + 4 + kl)?;
        let v = self.buf.get(self.at + 8 + kl..self.at + 8 + kl + vl)?;
        self.at += 8 + kl + vl;
        self.left -= 1;
        Some((k, v))
    }
}

/// (name, value) pairs in order.
pub struct Iter<'a>(Entries<'a>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        // SAFETY: every constructor keeps names UTF-8: `push` takes `&str`,
        // well-known names are string literals, and `from_bytes` checks each
        // stored literal name (re-encoding the buffer when one is not)
        // before it accepts a buffer. Re-checking here showed up in
        // profiles: it ran for every header of every event read.
        self.0.next().map(|(_, k, v)| (unsafe { std::str::from_utf8_unchecked(k) }, v))
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|(k, v)| (k, String::from_utf8_lossy(v)))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format-1 form of `pairs`, as data directories before format 2 hold it.
    fn format1(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            b.extend_from_slice(&(k.len() as u32).to_le_bytes());
            b.extend_from_slice(k);
            b.extend_from_slice(&(v.len() as u32).to_le_bytes());
            b.extend_from_slice(v);
        }
        b
    }

    #[test]
    fn roundtrip_bytes_and_order() {
        let long = vec![b'x'; 300];
        let h = Headers::from_pairs([
            ("ce_id", &b"1"[..]),
            ("bin", &[0xff, 0, 1][..]),
            ("ce_id", b"2"),
            ("ce_tracestate", &long),
        ]);
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("ce_id"), Some(&b"1"[..]), "first of a repeated name");
        assert_eq!(h.get("bin"), Some(&[0xff, 0, 1][..]));
        assert_eq!(h.get("ce_tracestate"), Some(&long[..]), "a value longer than one varint byte");
        assert_eq!(h.get("ce_type"), None);
        let back = Headers::from_bytes(h.as_bytes().to_vec());
        assert_eq!(back, h);
        let pairs: Vec<_> = back.iter().collect();
        assert_eq!(
            pairs,
            vec![("ce_id", &b"1"[..]), ("bin", &[0xff, 0, 1][..]), ("ce_id", &b"2"[..]), ("ce_tracestate", &long[..])]
        );
    }

    #[test]
    fn well_known_names_are_one_byte() {
        let h = Headers::from_pairs([("ce_specversion", "1.0"), ("ce_extra", "v")]);
        let mut want = MAGIC.to_vec();
        want.extend_from_slice(&[2, 3, b'1', b'.', b'0']);
        want.extend_from_slice(&[0, 8]);
        want.extend_from_slice(b"ce_extra");
        want.extend_from_slice(&[1, b'v']);
        assert_eq!(h.as_bytes(), &want[..]);
        assert!(WELL_KNOWN.len() <= 127);
        for (i, name) in WELL_KNOWN.iter().enumerate() {
            assert_eq!(code_of(name) as usize, i + 1, "code_of agrees with WELL_KNOWN for {name}");
        }
        assert_eq!(code_of("ce_unknown"), 0);
        assert_eq!(
            WELL_KNOWN.iter().collect::<std::collections::HashSet<_>>().len(),
            WELL_KNOWN.len(),
            "no name twice"
        );
    }

    #[test]
    fn a_spelled_out_well_known_name_is_found_too() {
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&[0, 5]);
        raw.extend_from_slice(b"ce_id");
        raw.extend_from_slice(&[1, b'7']);
        let h = Headers::from_bytes(raw);
        assert_eq!(h.get("ce_id"), Some(&b"7"[..]));
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("ce_id", &b"7"[..])]);
    }

    #[test]
    fn empty_is_stored_as_the_magic_alone() {
        let h = Headers::new();
        assert_eq!(h.as_bytes(), &MAGIC);
        assert!(Headers::from_bytes(MAGIC.to_vec()).is_empty());
        assert!(Headers::from_bytes(vec![0, 0, 0, 0]).is_empty(), "format 1's zero count");
        assert!(Headers::from_bytes(vec![]).is_empty());
    }

    #[test]
    fn format1_buffers_are_read_and_re_encoded() {
        let old = format1(&[(b"ce_id", b"1"), (b"x-custom", &[0xff]), (b"ce_id", b"2")]);
        let h = Headers::from_bytes(old);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            vec![("ce_id", &b"1"[..]), ("x-custom", &[0xff][..]), ("ce_id", &b"2"[..])]
        );
        assert!(h.as_bytes().starts_with(&MAGIC));
        assert_eq!(h, Headers::from_pairs([("ce_id", &b"1"[..]), ("x-custom", &[0xff][..]), ("ce_id", &b"2"[..])]));
    }

    #[test]
    fn set_replaces_and_retain_filters() {
        let mut h = Headers::from_pairs([("a", "1"), ("b", "2"), ("a", "3")]);
        h.set("a", b"9");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("b", &b"2"[..]), ("a", &b"9"[..])]);
        h.retain(|k, _| k != "b");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("a", &b"9"[..])]);
        assert_eq!(h.byte_len(), 2);
    }

    #[test]
    fn truncated_and_non_utf8_buffers_keep_their_valid_prefix() {
        // Format 2: a truncated value drops that entry.
        let h = Headers::from_pairs([("x", "1"), ("y", "2")]);
        let mut b = h.as_bytes().to_vec();
        b.truncate(b.len() - 1);
        assert_eq!(Headers::from_bytes(b).iter().collect::<Vec<_>>(), vec![("x", &b"1"[..])]);
        // An unknown code ends the valid prefix.
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[127, 1, b'v']);
        assert!(Headers::from_bytes(bad).is_empty());
        // Format 1, truncated, and with a name that is not UTF-8.
        let mut old = format1(&[(b"x", b"1"), (b"y", b"2")]);
        old.truncate(old.len() - 1);
        assert_eq!(Headers::from_bytes(old).iter().collect::<Vec<_>>(), vec![("x", &b"1"[..])]);
        let r = Headers::from_bytes(format1(&[(&[0xff], b"v")]));
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![("\u{fffd}", &b"v"[..])]);
        // Format 2 with a literal name that is not UTF-8 is repaired the same way.
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&[0, 1, 0xff, 1, b'v']);
        assert_eq!(Headers::from_bytes(raw).iter().collect::<Vec<_>>(), vec![("\u{fffd}", &b"v"[..])]);
    }
}
