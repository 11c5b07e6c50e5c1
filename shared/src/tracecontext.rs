//! W3C trace context across RabbitMQ: the scheduler's `traceparent` in a job's AMQP headers
//! becomes the parent of the job's span, and every event the job produces carries the job's
//! context in its own headers, so one trace runs from the enqueuing side to the events.
//! Without a configured propagator (no OpenTelemetry export) all of this is a no-op.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::propagation::{Extractor, Injector};
use std::collections::BTreeMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Makes the trace context in `props`' headers the parent of `span`.
pub fn adopt_parent(span: &tracing::Span, props: &BasicProperties) {
    let Some(headers) = props.headers().as_ref() else {
        return;
    };
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(cx);
}

/// The current span's context as propagation fields (`traceparent`, `tracestate`); empty when
/// nothing is being traced.
pub fn current() -> BTreeMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut out = BTreeMap::new();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MapInjector(&mut out))
    });
    out
}

/// Adds propagation fields to AMQP headers.
pub fn into_headers(fields: &BTreeMap<String, String>, headers: &mut FieldTable) {
    for (k, v) in fields {
        headers.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
}
