//! When to try a request again, and how long to wait first. Pure functions.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub deadline: Duration,
    /// A server's `Retry-After` longer than this is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            deadline: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The exponential backoff with full jitter (backon) for one request's retries.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_retries)
            .build()
    }
}

/// Is this HTTP status worth another try? 5xx (the bridge or a proxy is failing, or
/// provisioning is switched off), 429 (slow down) and 408 (the server timed us out). Every
/// other 4xx means the request itself is wrong and will stay wrong.
pub fn is_retryable_status(status: u16) -> bool {
    // 501 Not Implemented and 505 are answers about the request, not passing failures.
    status == 408
        || status == 429
        || ((500..=599).contains(&status) && status != 501 && status != 505)
}

/// Reads `Retry-After` as seconds or an HTTP date (RFC 9110 section 10.2.3), capped.
pub fn parse_retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let cap = Duration::from_secs(60);
        assert_eq!(
            parse_retry_after("3", now, cap),
            Some(Duration::from_secs(3))
        );
        assert_eq!(parse_retry_after(" 120 ", now, cap), Some(cap));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            parse_retry_after(&later, now, cap),
            Some(Duration::from_secs(7))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now, cap), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now, cap), None);
        assert_eq!(parse_retry_after("-1", now, cap), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 405, 413, 501] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = p.backoff().collect();
        assert_eq!(delays.len(), p.max_retries);
        assert!(delays.iter().all(|d| *d <= p.max_delay * 2));
    }
}
