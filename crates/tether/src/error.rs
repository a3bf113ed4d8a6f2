//! Application errors and the exit codes scripts rely on.

use tether_store::StoreError;

/// What an application function can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input was refused (a file, a field, a value); nothing was written.
    #[error("{0}")]
    Input(String),
    /// Input was refused because of one named field; nothing was written.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The write would break a rule (a value another user holds, a stale edit); nothing was
    /// written.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

impl AppError {
    /// Exit codes (documented in the README): 0 success, 1 internal or store failure,
    /// 2 usage error (from clap), 3 input refused with nothing written, 4 not found.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Input(_) | AppError::Field { .. } | AppError::Conflict(_) => 3,
            AppError::NotFound(_) => 4,
            AppError::Store(StoreError::Conflict { .. } | StoreError::Invalid(_)) => 3,
            AppError::Store(StoreError::NotFound(_)) => 4,
            AppError::Store(_) | AppError::Io(_) => 1,
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
