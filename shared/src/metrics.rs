//! Prometheus metrics (prometheus-client, the Prometheus project's own client), served on
//! `/metrics` by the worker. Names follow Prometheus conventions: `opsync_` prefix, base units,
//! `_total` on counters (added by the encoder), `_seconds` on durations.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// succeeded | duplicate | retried | dead_lettered
    pub outcome: String,
    /// The error kind, "" on success.
    pub error_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// 2xx, 3xx, 4xx, 5xx, or "error" for transport failures.
    pub status_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub error_kind: String,
}

pub struct Metrics {
    registry: Registry,
    pub jobs: Family<JobLabels, Counter>,
    pub sync_duration: Histogram,
    pub users_seen: Counter,
    pub events_published: Family<TypeLabels, Counter>,
    pub outbox_backlog: Gauge,
    pub outbox_oldest_age: Gauge<f64, AtomicU64>,
    pub bridge_request_duration: Family<StatusLabels, Histogram>,
    pub rate_limit_waits: Counter,
    pub retries: Counter,
    pub jobs_in_flight: Gauge,
    pub dead_lettered: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("opsync");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "jobs",
            "Sync jobs handled, by outcome and error kind",
            jobs.clone(),
        );
        let sync_duration = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "sync_duration_seconds",
            "Duration of successful syncs",
            sync_duration.clone(),
        );
        let users_seen = Counter::default();
        registry.register(
            "users_seen",
            "Directory members read from bridges",
            users_seen.clone(),
        );
        let events_published = Family::<TypeLabels, Counter>::default();
        registry.register(
            "events_published",
            "Events confirmed by the broker, by type",
            events_published.clone(),
        );
        let outbox_backlog = Gauge::default();
        registry.register(
            "outbox_backlog_events",
            "Events committed but not yet confirmed",
            outbox_backlog.clone(),
        );
        let outbox_oldest_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "outbox_oldest_event_age_seconds",
            "Age of the oldest unpublished event",
            outbox_oldest_age.clone(),
        );
        let bridge_request_duration =
            Family::<StatusLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            });
        registry.register(
            "bridge_request_duration_seconds",
            "Bridge request latency by status class",
            bridge_request_duration.clone(),
        );
        let rate_limit_waits = Counter::default();
        registry.register(
            "bridge_rate_limit_waits",
            "Requests that waited for the per-bridge rate limit",
            rate_limit_waits.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "bridge_retries",
            "Bridge requests retried after a transient failure",
            retries.clone(),
        );
        let jobs_in_flight = Gauge::default();
        registry.register(
            "jobs_in_flight",
            "Sync jobs running now",
            jobs_in_flight.clone(),
        );
        let dead_lettered = Family::<KindLabels, Counter>::default();
        registry.register(
            "dead_lettered_jobs",
            "Jobs sent to the dead-letter queue, by error kind",
            dead_lettered.clone(),
        );
        Self {
            registry,
            jobs,
            sync_duration,
            users_seen,
            events_published,
            outbox_backlog,
            outbox_oldest_age,
            bridge_request_duration,
            rate_limit_waits,
            retries,
            jobs_in_flight,
            dead_lettered,
        }
    }

    pub fn job(&self, outcome: &str, error_kind: &str) {
        self.jobs
            .get_or_create(&JobLabels {
                outcome: outcome.into(),
                error_kind: error_kind.into(),
            })
            .inc();
    }

    pub fn bridge_request(&self, status: Option<u16>, took: Duration) {
        let status_class = match status {
            Some(s) => format!("{}xx", s / 100),
            None => "error".into(),
        };
        self.bridge_request_duration
            .get_or_create(&StatusLabels { status_class })
            .observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new();
        m.job("succeeded", "");
        m.bridge_request(Some(200), Duration::from_millis(12));
        m.events_published
            .get_or_create(&TypeLabels {
                r#type: "user.added".into(),
            })
            .inc_by(3);
        let text = m.encode();
        assert!(
            text.contains("opsync_jobs_total{outcome=\"succeeded\",error_kind=\"\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("opsync_bridge_request_duration_seconds_count{status_class=\"2xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("opsync_events_published_total{type=\"user.added\"} 3"),
            "{text}"
        );
        assert!(text.contains("# TYPE opsync_sync_duration_seconds histogram"));
    }
}
