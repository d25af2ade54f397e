//! Lower-case hexadecimal, for digests and binary keys.

use std::fmt::Write;

/// `bytes` as lower-case hex, two digits a byte.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The bytes of an even-length hex string (either case); `None` for anything else.
pub fn decode(hex: &str) -> Option<Vec<u8>> {
    // (`from_str_radix` alone would take a sign: "+1")
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(encode(b), "0001abff");
        assert_eq!(decode("0001ABff").unwrap(), b);
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["0", "0g", "+1", "é0"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
