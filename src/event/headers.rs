//! Record headers kept in their stored form: one buffer holding a count,
//! then (name length, name, value length, value) for each header, lengths as
//! little-endian u32. It is exactly what the embedded bus stores.
//!
//! Why not `Vec<(String, Vec<u8>)>`: a CloudEvent in binary mode carries a
//! dozen headers, so that shape costs two allocations per header on every
//! fetch, decode and result, about fifty per event. Profiles of a worker
//! showed allocation and copying as the largest share of its CPU. Here a
//! record's headers are one allocation, written to and read from the store
//! without conversion; lookups walk the buffer (a dozen short names).
//!
//! Values are bytes, so a record travels untouched even when not UTF-8.
//! Names are UTF-8 (Kafka's are strings); a stored name that is not is
//! repaired lossily when the buffer is read back.

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Empty, or the count followed by the entries; always well-formed.
    buf: Vec<u8>,
}

/// The stored form of zero headers.
const EMPTY: [u8; 4] = [0; 4];

fn read_u32(b: &[u8], at: usize) -> Option<usize> {
    let x = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
}

impl Headers {
    pub fn new() -> Headers {
        Headers { buf: Vec::new() }
    }

    /// Room for headers whose names and values total about `bytes`.
    pub fn with_capacity(bytes: usize) -> Headers {
        Headers { buf: Vec::with_capacity(bytes + 4) }
    }

    /// Builds headers from (name, value) pairs, in order.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (K, V)>) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.push(k.as_ref(), v.as_ref());
        }
        h
    }

    /// Takes a stored buffer. Entries after a malformed one (a truncated or
    /// corrupt buffer) are dropped, as are never-valid buffers.
    pub fn from_bytes(buf: Vec<u8>) -> Headers {
        let Some(n) = read_u32(&buf, 0) else { return Headers::new() };
        let mut at = 4;
        let mut ok = 0;
        // A buffer that is all ASCII (the usual case: short lengths, ASCII
        // names) has only UTF-8 names; one pass over it is cheaper than
        // checking a dozen short names one by one.
        let ascii = buf.is_ascii();
        let mut names_utf8 = true;
        while ok < n {
            let Some(kl) = read_u32(&buf, at) else { break };
            let Some(name) = buf.get(at + 4..at + 4 + kl) else { break };
            let Some(vl) = read_u32(&buf, at + 4 + kl) else { break };
            if buf.len() < at + 8 + kl + vl {
                break;
            }
            names_utf8 &= ascii || std::str::from_utf8(name).is_ok();
            at += 8 + kl + vl;
            ok += 1;
        }
        if ok == n && at == buf.len() && names_utf8 {
            return Headers { buf };
        }
        // The rare path: rebuild the valid prefix with repaired names.
        let raw = Raw { buf: &buf, at: 4, left: ok };
        let mut h = Headers::new();
        for (k, v) in raw {
            h.push(&String::from_utf8_lossy(k), v);
        }
        h
    }

    /// The stored form.
    pub fn as_bytes(&self) -> &[u8] {
        if self.buf.is_empty() {
            &EMPTY
        } else {
            &self.buf
        }
    }

    pub fn len(&self) -> usize {
        read_u32(&self.buf, 0).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of names and values (for payload limits).
    pub fn byte_len(&self) -> usize {
        self.buf.len().saturating_sub(4 + 8 * self.len())
    }

    /// Appends a header (a name may repeat; [`Headers::get`] returns the first).
    pub fn push(&mut self, name: &str, value: &[u8]) {
        if self.buf.is_empty() {
            self.buf.extend_from_slice(&EMPTY);
        }
        self.buf.extend_from_slice(&(name.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
        let n = (self.len() + 1) as u32;
        self.buf[..4].copy_from_slice(&n.to_le_bytes());
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        // Bytes against bytes: no UTF-8 check of every name walked past.
        Raw { buf: &self.buf, at: 4, left: self.len() }.find(|(k, _)| *k == name.as_bytes()).map(|(_, v)| v)
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
        Iter(Raw { buf: &self.buf, at: 4, left: self.len() })
    }
}

/// Walks well-formed entries (names as bytes).
struct Raw<'a> {
    buf: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for Raw<'a> {
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
pub struct Iter<'a>(Raw<'a>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        // SAFETY: every constructor keeps names UTF-8: `push` takes `&str`,
        // and `from_bytes` checks each stored name (repairing any that is
        // not) before it accepts a buffer. Re-checking here showed up in
        // profiles: it ran for every header of every event read.
        self.0.next().map(|(k, v)| (unsafe { std::str::from_utf8_unchecked(k) }, v))
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

    #[test]
    fn roundtrip_bytes_and_order() {
        let h = Headers::from_pairs([("ce_id", &b"1"[..]), ("bin", &[0xff, 0, 1][..]), ("ce_id", b"2")]);
        assert_eq!(h.len(), 3);
        assert_eq!(h.get("ce_id"), Some(&b"1"[..]), "first of a repeated name");
        let back = Headers::from_bytes(h.as_bytes().to_vec());
        assert_eq!(back, h);
        let pairs: Vec<_> = back.iter().collect();
        assert_eq!(pairs, vec![("ce_id", &b"1"[..]), ("bin", &[0xff, 0, 1][..]), ("ce_id", &b"2"[..])]);
    }

    #[test]
    fn empty_is_stored_as_a_zero_count() {
        let h = Headers::new();
        assert_eq!(h.as_bytes(), &[0, 0, 0, 0]);
        assert_eq!(Headers::from_bytes(vec![0, 0, 0, 0]).len(), 0);
        assert_eq!(Headers::from_bytes(vec![]).len(), 0);
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
        let h = Headers::from_pairs([("x", "1"), ("y", "2")]);
        let mut b = h.as_bytes().to_vec();
        b.truncate(b.len() - 1);
        let t = Headers::from_bytes(b);
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![("x", &b"1"[..])]);

        let mut raw = vec![1, 0, 0, 0, 1, 0, 0, 0, 0xff, 1, 0, 0, 0, b'v'];
        let r = Headers::from_bytes(std::mem::take(&mut raw));
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![("\u{fffd}", &b"v"[..])]);
    }
}
