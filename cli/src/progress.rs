//! The progress bar and notes `blksnap backup` and `verify` show on
//! standard error.
//!
//! [`Terminal`] is the [`Observer`] the tool uses: notes go to standard
//! error as `blksnap: NOTE` lines unless quiet; the bar is drawn only when
//! standard error is a terminal and not quiet, redrawn in place with `\r`
//! at most ten times a second, and ended with a newline. [`render`] is the
//! bar's text, a pure function tested on the host.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::backup::Observer;

/// Cells of the bar itself.
const CELLS: usize = 24;

/// Least time between two redraws.
const REDRAW: Duration = Duration::from_millis(100);

/// Returns `bytes` in MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1 << 20))
}

/// Returns the bar for `done` of `total` bytes after `elapsed`:
/// `LABEL [#####-------]  42% 10.0/24.0 MiB 3.1 MiB/s`.
pub fn render(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let done = done.min(total);
    let fraction = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((fraction * CELLS as f64) as usize).min(CELLS);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        format!(" {} MiB/s", mib((done as f64 / secs) as u64))
    } else {
        String::new()
    };
    format!(
        "{label} [{}{}] {:3}% {}/{} MiB{rate}",
        "#".repeat(filled),
        "-".repeat(CELLS - filled),
        (fraction * 100.0) as u32,
        mib(done),
        mib(total),
    )
}

/// The bar of one phase.
struct Bar {
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    drawn: Option<Instant>,
    /// Length of the last line drawn, to blank what a shorter one leaves.
    width: usize,
}

/// Notes and progress on standard error.
pub struct Terminal {
    quiet: bool,
    bar_shown: bool,
    bar: Option<Bar>,
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

    /// Redraws the bar, at most every [`REDRAW`] unless `force`.
    fn draw(&mut self, force: bool) {
        let Some(bar) = self.bar.as_mut() else {
            return;
        };
        let now = Instant::now();
        if !force && bar.drawn.is_some_and(|t| now - t < REDRAW) {
            return;
        }
        bar.drawn = Some(now);
        let line = render(&bar.label, bar.done, bar.total, now - bar.start);
        let pad = bar.width.saturating_sub(line.len());
        bar.width = line.len();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{}", " ".repeat(pad));
        let _ = err.flush();
    }
}

impl Observer for Terminal {
    fn note(&mut self, text: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr(), "blksnap: {text}");
        }
    }

    fn start(&mut self, label: &str, bytes: u64) {
        if !self.bar_shown {
            return;
        }
        self.bar = Some(Bar {
            label: label.to_owned(),
            total: bytes,
            done: 0,
            start: Instant::now(),
            drawn: None,
            width: 0,
        });
        self.draw(true);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = self.bar.as_mut() {
            bar.done += bytes;
            self.draw(false);
        }
    }

    fn finish(&mut self) {
        if self.bar.is_some() {
            self.draw(true);
            let _ = writeln!(std::io::stderr());
            self.bar = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_text() {
        let s = Duration::from_secs(2);
        assert_eq!(
            render("/dev/loop0", 0, 64 << 20, Duration::ZERO),
            "/dev/loop0 [------------------------]   0% 0.0/64.0 MiB"
        );
        assert_eq!(
            render("/dev/loop0", 16 << 20, 64 << 20, s),
            "/dev/loop0 [######------------------]  25% 16.0/64.0 MiB 8.0 MiB/s"
        );
        assert_eq!(
            render("x", 64 << 20, 64 << 20, s),
            "x [########################] 100% 64.0/64.0 MiB 32.0 MiB/s"
        );
        // More than the total is shown as the total; nothing to do is done.
        assert_eq!(
            render("x", 100, 10, Duration::ZERO),
            "x [########################] 100% 0.0/0.0 MiB"
        );
        assert_eq!(
            render("x", 0, 0, Duration::ZERO),
            "x [########################] 100% 0.0/0.0 MiB"
        );
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
