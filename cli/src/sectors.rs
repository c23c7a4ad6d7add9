//! Ranges of 512-byte sectors and their `SECTOR:COUNT` text form.
//!
//! `markdirtyblock` takes ranges as `SECTOR:COUNT` arguments; [`Sectors`]
//! is that range, and [`BlockDevice::mark_dirty`](crate::BlockDevice::mark_dirty) hands
//! slices of it to the module as `blksnap_sectors`.

use std::fmt;
use std::str::FromStr;

use blksnap_uapi as uapi;

/// Size of a sector, the unit of every range here.
pub const SECTOR_SIZE: u64 = 512;

/// A range of 512-byte sectors.
///
/// Parsing yields only ranges with `count >= 1` whose end fits in `u64`;
/// ranges built from the fields are handed to the module as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sectors {
    /// First sector.
    pub offset: u64,
    /// Number of sectors.
    pub count: u64,
}

impl Sectors {
    /// Returns the range of `count` sectors starting at `offset`.
    pub const fn new(offset: u64, count: u64) -> Self {
        Self { offset, count }
    }

    /// Returns the sector just past the range, or `None` if that overflows.
    pub const fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.count)
    }
}

impl From<Sectors> for uapi::BlksnapSectors {
    fn from(s: Sectors) -> Self {
        Self {
            offset: s.offset,
            count: s.count,
        }
    }
}

impl fmt::Display for Sectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.offset, self.count)
    }
}

/// Why a string is not a `SECTOR:COUNT` range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSectorsError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for ParseSectorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid range {:?}: {} (expected SECTOR:COUNT, decimal 512-byte sectors)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseSectorsError {}

/// Parses a non-empty run of decimal digits, nothing else.
fn decimal(s: &str) -> Option<Result<u64, ()>> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().map_err(|_| ()))
}

impl FromStr for Sectors {
    type Err = ParseSectorsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseSectorsError {
            input: s.to_owned(),
            reason,
        };
        let (offset, count) = s.split_once(':').ok_or_else(|| fail("no ':'"))?;
        let offset = match decimal(offset) {
            None => return Err(fail("the sector is not a decimal number")),
            Some(Err(())) => return Err(fail("the sector is too large")),
            Some(Ok(v)) => v,
        };
        let count = match decimal(count) {
            None => return Err(fail("the count is not a decimal number")),
            Some(Err(())) => return Err(fail("the count is too large")),
            Some(Ok(0)) => return Err(fail("the count is 0")),
            Some(Ok(v)) => v,
        };
        let range = Sectors { offset, count };
        if range.end().is_none() {
            return Err(fail("the range runs past the last possible sector"));
        }
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_sector_colon_count() {
        assert_eq!("0:8".parse(), Ok(Sectors::new(0, 8)));
        assert_eq!("2048:1".parse(), Ok(Sectors::new(2048, 1)));
        assert_eq!(
            format!("{}:1", u64::MAX - 1).parse(),
            Ok(Sectors::new(u64::MAX - 1, 1))
        );
        assert_eq!(
            format!("0:{}", u64::MAX).parse(),
            Ok(Sectors::new(0, u64::MAX))
        );
    }

    #[test]
    fn rejects_malformed_ranges() {
        for (bad, why) in [
            ("", "no ':'"),
            ("8", "no ':'"),
            (":8", "sector is not"),
            ("8:", "count is not"),
            ("a:8", "sector is not"),
            ("8:b", "count is not"),
            ("-1:8", "sector is not"),
            ("+1:8", "sector is not"),
            ("1:-8", "count is not"),
            (" 1:8", "sector is not"),
            ("1:8 ", "count is not"),
            ("0x10:8", "sector is not"),
            ("1:8:9", "count is not"),
            ("1.5:8", "sector is not"),
            ("8:0", "count is 0"),
            ("8:000", "count is 0"),
            ("18446744073709551616:1", "sector is too large"),
            ("1:18446744073709551616", "count is too large"),
            ("18446744073709551615:1", "past the last"),
            ("1:18446744073709551615", "past the last"),
        ] {
            let err = bad.parse::<Sectors>().expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.starts_with("invalid range"), "{bad:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        }
    }

    proptest! {
        #[test]
        fn valid_ranges_round_trip(offset in any::<u64>(), count in 1u64..) {
            let range = Sectors::new(offset, count);
            let parsed = range.to_string().parse::<Sectors>();
            if offset.checked_add(count).is_some() {
                prop_assert_eq!(parsed, Ok(range));
            } else {
                prop_assert!(parsed.is_err());
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,30}") {
            if let Ok(r) = text.parse::<Sectors>() {
                prop_assert!(r.count >= 1);
                prop_assert!(r.end().is_some());
            }
        }
    }
}
