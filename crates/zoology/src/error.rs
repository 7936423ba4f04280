//! One error type for the library. Every variant names the field or file at fault and, where
//! there is one, the fix; the CLI prints it without a backtrace and exits non-zero.

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
