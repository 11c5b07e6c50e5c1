//! Logging and tracing.
//!
//! Logs: JSON lines when stderr is not a terminal (production, CI) or when
//! `OPSYNC_LOG_FORMAT=json`; readable lines on a terminal. `RUST_LOG` filters them.
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set,
//! spans are exported over OTLP/HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf`, the
//! default, or `http/json`; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*` are honoured by the SDK). The batch processor
//! runs on its own thread and drops what it cannot send: an exporter failure never fails a job.
//! Traces have their own filter (opsync's spans at debug, others at info), so `RUST_LOG=warn`
//! on the CLI still exports its spans.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes and stops the trace exporter when dropped (at the end of `main`).
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: the trace exporter did not flush: {e}");
        }
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

pub fn init(default_level: &str) -> Guard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        // lapin logs every returned message with its whole body: member records do not belong
        // in logs, and the outbox reports unroutable events itself.
        .add_directive(
            "lapin::returned_messages=off"
                .parse()
                .expect("valid directive"),
        );
    let json = match std::env::var("OPSYNC_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.compact().with_filter(filter).boxed()
    };

    let mut provider = None;
    let otel = if otlp_configured() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                let p = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(opentelemetry_sdk::Resource::builder().build())
                    .build();
                opentelemetry::global::set_text_map_propagator(
                    opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                );
                let tracer = p.tracer("opsync");
                provider = Some(p);
                let targets = Targets::new()
                    .with_default(tracing::Level::INFO)
                    .with_target("opsync_shared", tracing::Level::DEBUG)
                    .with_target("opsync", tracing::Level::DEBUG);
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(targets),
                )
            }
            Err(e) => {
                eprintln!(
                    "warning: OTLP export is configured but cannot start ({e}); continuing without traces"
                );
                None
            }
        }
    } else {
        None
    };
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Guard(provider)
}
