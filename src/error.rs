//! The library's error type: every failure a user can cause (bad files, bad paths, shapes
//! that do not match the spec) is a variant with a message that names the culprit.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cause is part of the message, not a `source`: a chain printer (`{:#}`) would
    /// say it twice.
    #[error("{}: {}", path.display(), io_text(cause))]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("model spec {origin}: {msg}")]
    Spec { origin: String, msg: String },
    #[error("unknown model `{model}`: not a file or folder, and not a built-in spec ({known})")]
    UnknownModel { model: String, known: String },
    #[error("weights {}: {msg}", path.display())]
    Weights { path: PathBuf, msg: String },
    #[error("onnx {}: {msg}", path.display())]
    Onnx { path: PathBuf, msg: String },
    #[error("image {}: {msg}", path.display())]
    Image { path: PathBuf, msg: String },
    #[error("database {}: {msg}", path.display())]
    Db { path: PathBuf, msg: String },
    #[error("npy {}: {msg}", path.display())]
    Npy { path: PathBuf, msg: String },
    #[error("input: {0}")]
    Input(String),
    #[error("path `{path}`: {msg}")]
    Path { path: String, msg: String },
    #[error("device: {0}")]
    Device(String),
    #[error("shape: {0}")]
    Shape(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A broken invariant: a bug in treevis, reported instead of a panic.
    #[error("internal error (a bug in treevis): {0}")]
    Internal(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            cause: source,
        }
    }

    pub fn weights(path: impl AsRef<Path>, msg: impl Into<String>) -> Error {
        Error::Weights {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn onnx(path: impl AsRef<Path>, msg: impl Into<String>) -> Error {
        Error::Onnx {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn db(path: impl AsRef<Path>, msg: impl Into<String>) -> Error {
        Error::Db {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn internal(msg: impl Into<String>) -> Error {
        Error::Internal(msg.into())
    }

    pub fn path(path: impl ToString, msg: impl Into<String>) -> Error {
        Error::Path {
            path: path.to_string(),
            msg: msg.into(),
        }
    }
}

/// An IO error as a user reads it: what went wrong, without the raw `os error N` where the
/// kind says more (a full disk is "no space left on device", not "Input/output error").
pub fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let plain = match e.kind() {
        K::StorageFull => Some("no space left on device"),
        K::QuotaExceeded => Some("disk quota exceeded"),
        K::NotFound => Some("no such file or directory"),
        K::PermissionDenied => Some("permission denied"),
        K::IsADirectory => Some("is a directory, not a file"),
        K::NotADirectory => Some("not a directory"),
        K::ReadOnlyFilesystem => Some("read-only file system"),
        K::UnexpectedEof => Some("the file ends too early (truncated?)"),
        _ => None,
    };
    match plain {
        Some(p) => p.to_string(),
        None => e.to_string(),
    }
}
