//! Standard base64 (RFC 4648 §4, with `=` padding), the encoding of the page's
//! `data:image/png;base64,...` URIs. Encoding only: the page is written, never read back
//! (the tests decode with an independent decoder).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `bytes` in standard base64 with padding: 4 characters per 3 bytes, the last group
/// padded with `=` to 4.
#[cfg(test)]
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    encode_into(bytes, &mut out);
    out
}

/// [`encode`], appended to `out` (no intermediate string for a large image).
pub fn encode_into(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    let sym = |v: u32, shift: u32| char::from(ALPHABET[((v >> shift) & 0x3f) as usize]);
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let v = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend([sym(v, 18), sym(v, 12), sym(v, 6), sym(v, 0)]);
    }
    match *chunks.remainder() {
        [a] => {
            let v = u32::from(a) << 16;
            out.extend([sym(v, 18), sym(v, 12), '=', '=']);
        }
        [a, b] => {
            let v = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend([sym(v, 18), sym(v, 12), sym(v, 6), '=']);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain decoder for the round trips (strict: padding only at the end).
    fn decode(s: &str) -> Option<Vec<u8>> {
        let s = s.as_bytes();
        if !s.len().is_multiple_of(4) {
            return None;
        }
        let val = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
        let mut out = Vec::new();
        for (i, q) in s.chunks(4).enumerate() {
            let last = i + 1 == s.len() / 4;
            let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && !last) {
                return None;
            }
            let mut v = 0u32;
            for &c in &q[..4 - pad] {
                v = (v << 6) | val(c)?;
            }
            v <<= 6 * pad as u32;
            let b = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
            out.extend_from_slice(&b[..3 - pad]);
        }
        Some(out)
    }

    #[test]
    fn rfc4648_test_vectors() {
        // RFC 4648 §10
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded, "{plain:?}");
            assert_eq!(decode(coded).as_deref(), Some(plain.as_bytes()));
        }
    }

    #[test]
    fn every_byte_and_length_round_trips() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for n in 0..all.len() {
            let e = encode(&all[..n]);
            assert_eq!(e.len(), n.div_ceil(3) * 4);
            assert!(e.bytes().all(|c| ALPHABET.contains(&c) || c == b'='));
            assert_eq!(decode(&e).as_deref(), Some(&all[..n]), "length {n}");
        }
        // the high symbols: 0xfb 0xff -> "+/8="
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
        assert_eq!(encode(&[0xff; 3]), "////");
    }

    #[test]
    fn encode_into_appends() {
        let mut s = String::from("data:image/png;base64,");
        encode_into(b"foobar", &mut s);
        assert_eq!(s, "data:image/png;base64,Zm9vYmFy");
    }
}
