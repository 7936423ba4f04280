//! How progress reaches a person. On a terminal (stdout and stderr both), animated progress
//! bars on stderr; otherwise (a pipe, `| tee`, a CI log, nohup) one plain line on stdout per
//! finished piece of work (an epoch of `train`, a run of a sweep), saying what finished and how
//! long it took, so that a log is never silent for minutes. `ZOOLOGY_PROGRESS=plain` or `bars`
//! overrides the choice; `-q` silences both.
//!
//! Layer 1 of 11, **foundations** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

use std::io::{IsTerminal, Write};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (`-q`).
    Quiet,
    /// Animated bars on stderr (a terminal).
    Bars,
    /// One plain line per finished piece of work, on stdout.
    Lines,
}

impl Progress {
    /// The mode for a command run with `quiet`: bars when stdout and stderr are both
    /// terminals, else lines (`ZOOLOGY_PROGRESS=plain|bars` overrides).
    pub fn detect(quiet: bool) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        match std::env::var("ZOOLOGY_PROGRESS").as_deref() {
            Ok("plain") | Ok("lines") => Progress::Lines,
            Ok("bars") => Progress::Bars,
            _ if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() => Progress::Bars,
            _ => Progress::Lines,
        }
    }

    /// Prints one progress line (only in [`Progress::Lines`]), flushed at once: a pipe's
    /// reader sees it when the work finishes, not when the buffer fills.
    pub fn line(self, text: &str) {
        if self == Progress::Lines {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
}

/// `42.3 s`, `3m05s`, `1h02m`: a duration for a progress line.
pub fn duration(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", s as u64 / 60, s as u64 % 60)
    } else {
        format!("{}h{:02}m", s as u64 / 3600, (s as u64 % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_naturally() {
        assert_eq!(super::duration(4.25), "4.2 s");
        assert_eq!(super::duration(185.0), "3m05s");
        assert_eq!(super::duration(3725.0), "1h02m");
    }

    #[test]
    fn quiet_wins_and_the_environment_chooses_otherwise() {
        assert_eq!(super::Progress::detect(true), super::Progress::Quiet);
        // the test harness captures stdout: not a terminal, so lines unless overridden
        if std::env::var_os("ZOOLOGY_PROGRESS").is_none() && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            assert_eq!(super::Progress::detect(false), super::Progress::Lines);
        }
    }
}
