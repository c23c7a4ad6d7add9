//! `tagblk`: a test tool that writes blocks which know where they belong.
//!
//! Used by the blksnap VM tests and `make demo` to prove that a snapshot
//! image holds, byte for byte, what the original device held at the moment
//! of the take:
//!
//! - [`tag::write`] writes every 4 KiB block of a range with its offset, a
//!   generation number, a magic and a checksum ([`block`]), from several
//!   threads in a seeded order ([`order`]), with `O_DIRECT` ([`device`]);
//! - [`tag::verify`] reads the range back and reports the blocks that are
//!   not the given generation's;
//! - [`seq::seq`] writes an increasing sequence alternately to two devices,
//!   and [`seq::seqcheck`] checks that two images hold one prefix of it,
//!   i.e. were cut at one moment.

pub mod block;
pub mod device;
pub mod order;
pub mod seq;
pub mod tag;

pub use device::{Error, Result};

/// Parses a byte count: digits with an optional binary suffix K, M, G or T
/// (`4096`, `64K`, `16M`).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown size suffix in '{s}' (use K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
