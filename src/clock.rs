//! Wall-clock time that follows tokio's clock: exactly `SystemTime::now()` in production, and
//! moved ahead by however far a test has advanced tokio's paused clock, so that timestamps,
//! windows and deadlines can be tested with paused time instead of sleeps.

use std::time::SystemTime;

pub fn now() -> SystemTime {
    let ahead = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(std::time::Instant::now());
    SystemTime::now() + ahead
}
