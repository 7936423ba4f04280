//! One error type for the library. Every variant names the field or file at fault and, where
//! there is one, the fix; the CLI prints it without a backtrace and exits non-zero.
//!
//! Layer 1 of 11, **foundations** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value is missing, has the wrong type, or is impossible.
    #[error("config: `{field}`: {msg}")]
    Config { field: String, msg: String },
    /// Generated or loaded data is inconsistent.
    #[error("data: {0}")]
    Data(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A libtorch operation failed (shape mismatch, device unavailable, ...).
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A checkpoint that cannot be used: damaged, foreign, edited or from another version.
    #[error("{}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    /// Another process trains this run directory now (its lock is held).
    #[error("{0}")]
    Busy(String),
    /// Code panicked (a bug, or libtorch rejected an operation); caught and reported.
    #[error("panicked: {0}")]
    Panic(String),
    /// Anything else, with a message that says what to do.
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a config error naming `field`.
pub fn config_err(field: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::Config { field: field.into(), msg: msg.into() }
}

/// Wraps an io error with the path it concerns.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Runs `f`, turning a panic into [`Error::Panic`] with the panic's message, so that a run that
/// hits a bug is recorded as failed with a reason instead of vanishing.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(Error::Panic(panic_message(payload.as_ref()))),
    }
}

/// The message of a panic payload (`&str` or `String`; else a placeholder), without the C++
/// backtrace libtorch appends to its errors.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let s = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".into()
    };
    without_cpp_backtrace(&s)
}

/// Cuts a libtorch error message before its "Exception raised from" / "frame #0" lines.
pub fn without_cpp_backtrace(s: &str) -> String {
    let cut = ["\nException raised from", "\\nException raised from", "\nframe #0", "\\nframe #0"]
        .iter()
        .filter_map(|m| s.find(m))
        .min();
    match cut {
        Some(i) => format!("{} [libtorch backtrace omitted]", s[..i].trim_end()),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn panics_become_errors_without_libtorch_backtraces() {
        let e = super::catch_panic::<()>(|| panic!("boom {}", 3)).unwrap_err().to_string();
        assert_eq!(e, "panicked: boom 3");
        let t = "Torch(\"[enforce fail] can't allocate memory: you tried to allocate 4398046512128 bytes.\\nframe #0: c10::Throw\\nframe #1: x\")";
        assert_eq!(super::without_cpp_backtrace(t), "Torch(\"[enforce fail] can't allocate memory: you tried to allocate 4398046512128 bytes. [libtorch backtrace omitted]");
    }
}
