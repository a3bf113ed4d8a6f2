//! The store's errors. Unique-constraint violations become [`StoreError::Conflict`] with the
//! constraint's name, so callers can say which value clashed without knowing SQL.

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused a write; nothing was written.
    #[error("{message}")]
    Conflict {
        constraint: &'static str,
        message: String,
    },
    /// A record the caller named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Input the store refuses (e.g. an External ID import that would overwrite a link).
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported database URL '{0}': use sqlite:PATH or postgres://…")]
    InvalidUrl(String),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    /// A value in the database that this version cannot read (e.g. an unknown situation).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("background task failed: {0}")]
    Task(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// tokio-postgres's own message is only "db error" or "error connecting to server"; the
/// server's message or the underlying cause says what happened.
fn postgres_message(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        };
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}
