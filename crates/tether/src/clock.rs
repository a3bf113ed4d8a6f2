//! The one module that reads the clock. Everything else takes time as a parameter, so tests
//! can pass a fixed time (clippy.toml enforces this).
#![allow(clippy::disallowed_methods)]

use time::OffsetDateTime;

/// The current time in UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Measures how long work took, for reports.
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    pub fn start() -> Self {
        Stopwatch(std::time::Instant::now())
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }

    pub fn elapsed_micros(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}
