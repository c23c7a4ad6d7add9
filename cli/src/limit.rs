//! The size limit of a difference storage and its `N[K|M|G]` text form.
//!
//! `snapshot_create --limit` takes the most bytes the difference storage may
//! grow to, as a decimal number with an optional binary suffix (`K` = 2^10,
//! `M` = 2^20, `G` = 2^30, either case). [`Limit`] is that size; the module
//! wants it in 512-byte sectors, which [`Limit::sectors`] gives, rounding a
//! partial sector down so that the limit is never exceeded.

use std::fmt;
use std::str::FromStr;

use crate::sectors::SECTOR_SIZE;

/// A size limit in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Limit {
    bytes: u64,
}

impl Limit {
    /// Returns the limit of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self { bytes }
    }

    /// Returns the limit in bytes.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Returns the limit in whole 512-byte sectors, rounded down.
    pub const fn sectors(&self) -> u64 {
        self.bytes / SECTOR_SIZE
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes)
    }
}

/// Why a string is not a size limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLimitError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for ParseLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid limit {:?}: {} (expected bytes as N, NK, NM or NG, decimal)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseLimitError {}

/// Returns the multiplier of a size suffix, if `c` is one.
fn suffix_multiplier(c: char) -> Option<u64> {
    match c.to_ascii_uppercase() {
        'K' => Some(1 << 10),
        'M' => Some(1 << 20),
        'G' => Some(1 << 30),
        _ => None,
    }
}

impl FromStr for Limit {
    type Err = ParseLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseLimitError {
            input: s.to_owned(),
            reason,
        };
        let (digits, multiplier) = match s.chars().last().and_then(suffix_multiplier) {
            // The suffix is one ASCII byte.
            Some(m) => (&s[..s.len() - 1], m),
            None => (s, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(fail("not a decimal number with an optional K, M or G"));
        }
        let number: u64 = digits
            .parse()
            .map_err(|_| fail("the number is too large"))?;
        let bytes = number
            .checked_mul(multiplier)
            .ok_or_else(|| fail("the size does not fit in 64 bits"))?;
        Ok(Self { bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plain_bytes_and_suffixes() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("1000", 1000),
            ("1K", 1024),
            ("1k", 1024),
            ("4K", 4096),
            ("1M", 1 << 20),
            ("256m", 256 << 20),
            ("1G", 1 << 30),
            ("10g", 10 << 30),
            ("0G", 0),
            ("007K", 7 << 10),
            ("18446744073709551615", u64::MAX),
            ("17179869183G", 17_179_869_183 << 30),
        ] {
            assert_eq!(
                text.parse::<Limit>(),
                Ok(Limit::from_bytes(bytes)),
                "{text}"
            );
        }
    }

    #[test]
    fn converts_to_sectors_rounding_down() {
        assert_eq!(Limit::from_bytes(0).sectors(), 0);
        assert_eq!(Limit::from_bytes(511).sectors(), 0);
        assert_eq!(Limit::from_bytes(512).sectors(), 1);
        assert_eq!(Limit::from_bytes(1023).sectors(), 1);
        assert_eq!("1K".parse::<Limit>().unwrap().sectors(), 2);
        assert_eq!("1M".parse::<Limit>().unwrap().sectors(), 2048);
        assert_eq!("1G".parse::<Limit>().unwrap().sectors(), 2_097_152);
        assert_eq!("10G".parse::<Limit>().unwrap().sectors(), 20_971_520);
        assert_eq!(Limit::from_bytes(u64::MAX).sectors(), u64::MAX / 512);
    }

    #[test]
    fn rejects_malformed_limits() {
        for (bad, why) in [
            ("", "not a decimal number"),
            ("K", "not a decimal number"),
            ("G", "not a decimal number"),
            ("1T", "not a decimal number"),
            ("1KB", "not a decimal number"),
            ("1KiB", "not a decimal number"),
            ("1 K", "not a decimal number"),
            (" 1", "not a decimal number"),
            ("1 ", "not a decimal number"),
            ("-1", "not a decimal number"),
            ("+1", "not a decimal number"),
            ("1.5G", "not a decimal number"),
            ("0x10", "not a decimal number"),
            ("1e9", "not a decimal number"),
            ("1KK", "not a decimal number"),
            ("é", "not a decimal number"),
            ("18446744073709551616", "too large"),
            ("99999999999999999999K", "too large"),
            ("18014398509481984K", "does not fit"),
            ("17179869184G", "does not fit"),
        ] {
            let err = bad.parse::<Limit>().expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.starts_with("invalid limit"), "{bad:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        }
    }

    #[test]
    fn displays_bytes() {
        assert_eq!("2M".parse::<Limit>().unwrap().to_string(), "2097152");
        assert_eq!(Limit::from_bytes(7).bytes(), 7);
    }

    proptest! {
        #[test]
        fn suffixes_multiply(n in 0u64..1 << 33, s in "[kKmMgG]") {
            let m = suffix_multiplier(s.chars().next().unwrap()).unwrap();
            let parsed = format!("{n}{s}").parse::<Limit>();
            match n.checked_mul(m) {
                Some(bytes) => prop_assert_eq!(parsed, Ok(Limit::from_bytes(bytes))),
                None => prop_assert!(parsed.is_err()),
            }
        }

        #[test]
        fn plain_numbers_round_trip(n in any::<u64>()) {
            let limit = Limit::from_bytes(n);
            prop_assert_eq!(limit.to_string().parse::<Limit>(), Ok(limit));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,24}") {
            let _ = text.parse::<Limit>();
        }
    }
}
