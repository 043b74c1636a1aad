//! W3C Trace Context: the `traceparent` an event carries, generated when it
//! is published, derived from its identity when it came without one, and a
//! child span per result; parsed and written for every event.

use sha2::{Digest, Sha256};

use super::EventError;

/// W3C Trace Context `traceparent`: version 00, trace id, parent span id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    pub fn generate() -> TraceParent {
        let trace_id = *uuid::Uuid::new_v4().as_bytes();
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
        TraceParent { trace_id, span_id, flags: 1 }
    }

    /// The trace context of an event that came without one: a trace id
    /// and span id derived from its identity (`source`, `id`), so that a
    /// redelivery yields the same trace, and so the same result
    /// `traceparent`. Sampled, like a generated one.
    pub fn derived(source: &str, id: &str) -> TraceParent {
        let mut h = Sha256::new();
        for p in ["modelbus-trace", source, id] {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        let d = h.finalize();
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        trace_id.copy_from_slice(&d[..16]);
        span_id.copy_from_slice(&d[16..24]);
        // All-zero ids are invalid; a hash all zero in 8 bytes is as good as never.
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        TraceParent { trace_id, span_id, flags: 1 }
    }

    /// Same trace, a new span derived from `seed`, so that a redelivered input
    /// yields a byte-identical result.
    pub fn child(&self, seed: &[u8]) -> TraceParent {
        let digest = Sha256::digest(seed);
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&digest[..8]);
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        TraceParent { trace_id: self.trace_id, span_id, flags: self.flags }
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The header value, `00-<trace id>-<span id>-<flags>`, built on the
    /// stack: this runs for every result, and going through `format!` cost
    /// more than the rest of the header put together.
    pub fn encode(&self) -> [u8; 55] {
        let mut b = [b'-'; 55];
        b[..2].copy_from_slice(b"00");
        // The slices are exactly twice the input's length, so these cannot fail.
        let _ = hex::encode_to_slice(self.trace_id, &mut b[3..35]);
        let _ = hex::encode_to_slice(self.span_id, &mut b[36..52]);
        let _ = hex::encode_to_slice([self.flags], &mut b[53..55]);
        b
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.encode()).unwrap_or_default())
    }
}

impl std::str::FromStr for TraceParent {
    type Err = EventError;
    fn from_str(s: &str) -> Result<Self, EventError> {
        let bad = |reason: &str| EventError::InvalidAttribute { name: "traceparent".into(), reason: reason.into() };
        let s = s.trim();
        let b = s.as_bytes();
        // The usual, exact form by position (this runs for every event read);
        // anything else (a later version's extra fields) by splitting.
        let (version, trace, span, fl) = if b.len() == 55 && b[2] == b'-' && b[35] == b'-' && b[52] == b'-' {
            (&s[..2], &s[3..35], &s[36..52], &s[53..])
        } else {
            let mut it = s.split('-');
            let (Some(version), Some(trace), Some(span), Some(fl)) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad("expected 00-<32 hex>-<16 hex>-<2 hex>"));
            };
            (version, trace, span, fl)
        };
        if version.len() != 2 || version == "ff" {
            return Err(bad("expected 00-<32 hex>-<16 hex>-<2 hex>"));
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flags = [0u8; 1];
        hex::decode_to_slice(trace, &mut trace_id).map_err(|_| bad("trace id must be 32 hex digits"))?;
        hex::decode_to_slice(span, &mut span_id).map_err(|_| bad("span id must be 16 hex digits"))?;
        hex::decode_to_slice(fl, &mut flags).map_err(|_| bad("flags must be 2 hex digits"))?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(bad("all-zero ids are invalid"));
        }
        Ok(TraceParent { trace_id, span_id, flags: flags[0] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_the_exact_form_and_later_versions() {
        let t = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let p: TraceParent = t.parse().unwrap();
        assert_eq!(p.to_string(), t);
        assert_eq!(&p.encode()[..], t.as_bytes());
        // A later version may append fields; the first four still parse.
        let later: TraceParent =
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds".parse().unwrap();
        assert_eq!(later, p);
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
            "00-0af7651916cd43dd8448eb211c80319cb-7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad}");
        }
    }

    #[test]
    fn child_span_keeps_trace() {
        let t = TraceParent::generate();
        let c = t.child(b"x");
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
        assert_eq!(c.to_string().parse::<TraceParent>().unwrap(), c);
    }
}
