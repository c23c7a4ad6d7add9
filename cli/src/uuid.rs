//! Snapshot and CBT-generation identifiers as text.
//!
//! The module hands out identifiers as 16 raw bytes; people and scripts see
//! them in the lowercase 8-4-4-4-12 form (`01234567-89ab-cdef-0123-456789abcdef`).
//! [`Uuid`] converts between the two, and parsing accepts nothing but that
//! form (hex digits of either case), so a mistyped identifier is an error
//! here rather than an ESRCH from the module.

use std::fmt;
use std::str::FromStr;

use blksnap_uapi as uapi;

/// A 16-byte identifier of a snapshot or of a CBT generation.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid([u8; uapi::UUID_SIZE]);

/// Length of the text form, `8-4-4-4-12`.
const TEXT_LEN: usize = 36;
/// Byte positions of the hyphens in the text form.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl Uuid {
    /// Returns the identifier made of these bytes.
    pub const fn from_bytes(bytes: [u8; uapi::UUID_SIZE]) -> Self {
        Self(bytes)
    }

    /// Returns the identifier's bytes, in the order the module stores them.
    pub const fn as_bytes(&self) -> &[u8; uapi::UUID_SIZE] {
        &self.0
    }
}

impl From<uapi::BlksnapUuid> for Uuid {
    fn from(id: uapi::BlksnapUuid) -> Self {
        Self(id.b)
    }
}

impl From<Uuid> for uapi::BlksnapUuid {
    fn from(id: Uuid) -> Self {
        Self { b: id.0 }
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// Why a string is not a UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseUuidError {
    input: String,
    reason: String,
}

impl fmt::Display for ParseUuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid UUID {:?}: {} (expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseUuidError {}

/// Returns the value of one hex digit.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl FromStr for Uuid {
    type Err = ParseUuidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ParseUuidError {
            input: s.to_owned(),
            reason,
        };
        let text = s.as_bytes();
        if text.len() != TEXT_LEN {
            return Err(fail(format!(
                "{} characters, not {TEXT_LEN}",
                s.chars().count()
            )));
        }
        let mut digits = [0u8; 2 * uapi::UUID_SIZE];
        let mut n = 0;
        for (pos, &c) in text.iter().enumerate() {
            if HYPHENS.contains(&pos) {
                if c != b'-' {
                    return Err(fail(format!("no '-' at position {}", pos + 1)));
                }
            } else if let Some(v) = hex_value(c) {
                digits[n] = v;
                n += 1;
            } else {
                // Report the whole character, which may span several bytes.
                let ch = s[pos..].chars().next().unwrap_or('?');
                return Err(fail(format!(
                    "{ch:?} at position {} is not a hex digit",
                    pos + 1
                )));
            }
        }
        let mut bytes = [0u8; uapi::UUID_SIZE];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = pair[0] << 4 | pair[1];
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: [u8; 16] = [
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ];

    #[test]
    fn displays_lowercase_8_4_4_4_12() {
        let id = Uuid::from_bytes(SAMPLE);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-fedc-ba9876543210");
        assert_eq!(
            Uuid::default().to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            format!("{id:?}"),
            "Uuid(01234567-89ab-cdef-fedc-ba9876543210)"
        );
    }

    #[test]
    fn parses_either_case() {
        let id = Uuid::from_bytes(SAMPLE);
        assert_eq!("01234567-89ab-cdef-fedc-ba9876543210".parse(), Ok(id));
        assert_eq!("01234567-89AB-CDEF-FEDC-BA9876543210".parse(), Ok(id));
    }

    #[test]
    fn converts_to_and_from_the_uapi_type() {
        let raw = uapi::BlksnapUuid { b: SAMPLE };
        let id = Uuid::from(raw);
        assert_eq!(id.as_bytes(), &SAMPLE);
        assert_eq!(uapi::BlksnapUuid::from(id), raw);
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "01234567",
            "0123456789abcdeffedcba9876543210",
            "{01234567-89ab-cdef-fedc-ba9876543210}",
            "01234567-89ab-cdef-fedc-ba9876543210 ",
            " 01234567-89ab-cdef-fedc-ba9876543210",
            "01234567-89ab-cdef-fedc-ba987654321",
            "01234567-89ab-cdef-fedc-ba98765432100",
            "0123456-789ab-cdef-fedc-ba9876543210",
            "01234567_89ab_cdef_fedc_ba9876543210",
            "01234567-89ab-cdef-fedc-ba987654321g",
            "g1234567-89ab-cdef-fedc-ba9876543210",
            "+1234567-89ab-cdef-fedc-ba9876543210",
            "01234567-89ab-cdef-fedc-ba98765432é",
            "01234567-89ab-cdef-fedc-ba987654321\n",
            "urn:uuid:01234567-89ab-cdef-fedc-ba98",
        ] {
            let err = bad.parse::<Uuid>().expect_err(bad);
            let text = err.to_string();
            assert!(text.starts_with("invalid UUID"), "{text}");
            assert_eq!(text.lines().count(), 1, "{bad:?}: {text}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = "0123".parse::<Uuid>().unwrap_err().to_string();
        assert!(e.contains("4 characters, not 36"), "{e}");
        let e = "01234567x89ab-cdef-fedc-ba9876543210"
            .parse::<Uuid>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("no '-' at position 9"), "{e}");
        let e = "01234567-89ab-cdef-fedc-ba987654321z"
            .parse::<Uuid>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("'z' at position 36"), "{e}");
    }

    proptest! {
        #[test]
        fn bytes_round_trip_through_text(bytes in any::<[u8; 16]>()) {
            let id = Uuid::from_bytes(bytes);
            let text = id.to_string();
            prop_assert_eq!(text.len(), 36);
            prop_assert_eq!(text.to_lowercase(), text.clone());
            prop_assert_eq!(text.parse::<Uuid>(), Ok(id));
            prop_assert_eq!(text.to_uppercase().parse::<Uuid>(), Ok(id));
        }

        #[test]
        fn valid_text_round_trips(text in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}") {
            let id: Uuid = text.parse().unwrap();
            prop_assert_eq!(id.to_string(), text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            if let Ok(id) = text.parse::<Uuid>() {
                prop_assert_eq!(id.to_string(), text.to_lowercase());
            }
        }

        #[test]
        fn one_changed_character_is_caught(bytes in any::<[u8; 16]>(), pos in 0usize..36, c in "[^0-9a-fA-F-]") {
            let mut text = Uuid::from_bytes(bytes).to_string();
            text.replace_range(pos..pos + 1, &c);
            prop_assert!(text.parse::<Uuid>().is_err());
        }
    }
}
