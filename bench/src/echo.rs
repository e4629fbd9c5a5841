//! The echo mode's payloads: each request's bytes name its sequence number, so a reply that comes
//! back out of order, truncated, or from an earlier request (a late UDP datagram) is caught by the
//! content check rather than counted as a success.
//!
//! A payload is the sequence number in 16 hex digits followed by `abc…z` filler, cut to the payload
//! size (a payload shorter than 16 bytes carries the low digits only).

/// How many bytes of a payload carry the sequence number.
const SEQ_DIGITS: usize = 16;

/// Byte `i` of a `size`-byte payload.
fn byte_at(seq: u64, size: usize, i: usize) -> u8 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = size.min(SEQ_DIGITS);
    if i < digits {
        HEX[((seq >> (4 * (digits - 1 - i))) & 0xf) as usize]
    } else {
        b'a' + ((i - digits) % 26) as u8
    }
}

/// Appends request `seq`'s payload of `size` bytes to `out`.
pub fn payload(seq: u64, size: usize, out: &mut Vec<u8>) {
    out.extend((0..size).map(|i| byte_at(seq, size, i)));
}

/// Whether `reply` is exactly request `seq`'s payload of `size` bytes.
pub fn matches(seq: u64, size: usize, reply: &[u8]) -> bool {
    reply.len() == size
        && reply
            .iter()
            .enumerate()
            .all(|(i, &b)| b == byte_at(seq, size, i))
}

/// Says how `reply` differs from request `seq`'s payload, for the error report.
pub fn mismatch(seq: u64, size: usize, reply: &[u8]) -> String {
    if reply.len() != size {
        return format!("echo reply of {} bytes, expected {size}", reply.len());
    }
    let at = (0..size)
        .find(|&i| reply[i] != byte_at(seq, size, i))
        .unwrap_or(0);
    let shown = String::from_utf8_lossy(&reply[..reply.len().min(24)]);
    format!("echo reply differs from request {seq} at byte {at}: {shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_names_its_sequence_number() {
        let mut out = Vec::new();
        payload(0x1f, 20, &mut out);
        assert_eq!(out, b"000000000000001fabcd");
        assert!(matches(0x1f, 20, &out));
        assert!(!matches(0x20, 20, &out));
        assert!(!matches(0x1f, 21, &out));
    }

    #[test]
    fn short_payloads_keep_the_low_digits() {
        let mut out = Vec::new();
        payload(0xabc, 3, &mut out);
        assert_eq!(out, b"abc");
        let mut long = Vec::new();
        payload(0xabc, 64, &mut long);
        assert!(long.starts_with(b"0000000000000abc"));
        assert!(!matches(0xabd, 64, &long));
    }

    #[test]
    fn mismatch_says_what_differs() {
        let mut out = Vec::new();
        payload(1, 16, &mut out);
        assert!(mismatch(2, 16, &out).contains("byte 15"));
        assert!(mismatch(1, 17, &out).contains("16 bytes, expected 17"));
    }
}
