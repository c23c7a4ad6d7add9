//! What went wrong in a run: failures counted by kind, the first few of
//! each kind printed at once as `FAIL kind: what`, so that the log of a
//! failed VM test says what happened even if the run is cut short.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// How many failures of one kind are printed; the rest are only counted.
const PRINTED_PER_KIND: u64 = 8;

/// The failures of a run.
#[derive(Debug, Default)]
pub struct Failures {
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl Failures {
    /// No failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one failure of `kind`; prints it if it is among the first of
    /// its kind.
    pub fn fail(&self, kind: &'static str, what: impl FnOnce() -> String) {
        let n = {
            let mut m = self.by_kind.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry(kind).or_default();
            *n += 1;
            *n
        };
        if n <= PRINTED_PER_KIND {
            println!("FAIL {kind}: {}", what());
        } else if n == PRINTED_PER_KIND + 1 {
            println!("FAIL {kind}: more of these follow, only counted");
        }
    }

    /// Failures of `kind` so far.
    pub fn count(&self, kind: &str) -> u64 {
        let m = self.by_kind.lock().unwrap_or_else(|e| e.into_inner());
        m.get(kind).copied().unwrap_or(0)
    }

    /// Whether there was none.
    pub fn is_empty(&self) -> bool {
        self.by_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// One line: `failures: kind=N ...`, or `failures: none`.
    pub fn summary(&self) -> String {
        let m = self.by_kind.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_empty() {
            return "failures: none".to_string();
        }
        let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k}={n}")).collect();
        format!("failures: {}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_kind() {
        let f = Failures::new();
        assert!(f.is_empty());
        assert_eq!(f.summary(), "failures: none");
        for _ in 0..10 {
            f.fail("post-take", || "x".into());
        }
        f.fail("original", || "y".into());
        assert_eq!(f.count("post-take"), 10);
        assert_eq!(f.count("stale"), 0);
        assert_eq!(f.summary(), "failures: original=1 post-take=10");
    }
}
