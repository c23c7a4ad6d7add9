//! The progress bar and notes `blksnap backup` and `verify` show on
//! standard error.
//!
//! [`Terminal`] is the [`Observer`] the tool uses: notes go to standard
//! error as `blksnap: NOTE` lines unless quiet; the bar, an `indicatif` bar
//! with the rate and the time left, is drawn only when standard error is a
//! terminal and not quiet, and stays on its line when its phase ends.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backup::Observer;

/// The bar's line: `LABEL [#####-------]  42% 10.00 MiB/24.00 MiB
/// 3.10 MiB/s ETA 5s`.
const TEMPLATE: &str = "{msg} [{bar:24}] {percent:>3}% \
                        {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// Returns the look of the bars.
fn style() -> ProgressStyle {
    ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#-")
}

/// Notes and progress on standard error.
pub struct Terminal {
    quiet: bool,
    bar_shown: bool,
    bar: Option<ProgressBar>,
}

impl Terminal {
    /// Returns the observer: silent with `quiet`, without a bar when
    /// standard error is not a terminal.
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            bar_shown: !quiet && std::io::stderr().is_terminal(),
            bar: None,
        }
    }
}

impl Observer for Terminal {
    fn note(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        let line = || {
            let _ = writeln!(std::io::stderr(), "blksnap: {text}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(line),
            None => line(),
        }
    }

    fn start(&mut self, label: &str, bytes: u64) {
        if !self.bar_shown {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr())
            .with_style(style())
            .with_message(label.to_owned());
        bar.tick();
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_valid() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }

    #[test]
    fn quiet_shows_nothing() {
        let mut t = Terminal::new(true);
        assert!(!t.bar_shown);
        t.start("x", 10);
        t.advance(5);
        assert!(t.bar.is_none());
        t.finish();
    }
}
