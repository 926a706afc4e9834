//! OpenTelemetry traces: one span per Kafka transaction, linked to the
//! trace contexts that producers put in the input records' W3C `traceparent`
//! headers, and spans for rebalances and state restores.
//!
//! Export is OTLP over HTTP (protobuf), configured only by the standard
//! `OTEL_*` environment variables and off unless one of them asks for it
//! (see [`OtlpExport::from_env`]). When it is off no span is built and no
//! header is parsed: the hot path pays one branch per record.
//!
//! Why links and not parent/child: a transaction covers records of many
//! unrelated requests, so it cannot be the child of one of them; the
//! OpenTelemetry messaging conventions model batch processing as a span that
//! links to each message's creation context.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Array, Context, ContextGuard, KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::error::{Error, Result};
use crate::records::Header;

/// Name of the span closing one Kafka transaction.
pub const TRANSACTION_SPAN: &str = "auditchain.transaction";
/// Name of the span around one rebalance callback.
pub const REBALANCE_SPAN: &str = "auditchain.rebalance";
/// Name of the span restoring partitions' chain state.
pub const RESTORE_SPAN: &str = "auditchain.restore";

/// The W3C trace-context header producers set on input records.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The OpenTelemetry SDK's default `OTEL_SPAN_LINK_COUNT_LIMIT`.
const DEFAULT_LINK_LIMIT: usize = 128;

/// Where the processor's spans go: nowhere ([`Traces::off`]) or a tracer.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Traces {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tracer: SdkTracer,
    link_limit: usize,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl Traces {
    /// No tracing: nothing is built, nothing is parsed.
    pub fn off() -> Traces {
        Traces { inner: None }
    }

    /// Spans go to `provider` (which the caller flushes and shuts down).
    /// `link_limit` caps the links per transaction span; records beyond it
    /// are counted in `auditchain.links.dropped` instead.
    pub fn new(provider: &SdkTracerProvider, link_limit: usize) -> Traces {
        Traces {
            inner: Some(Arc::new(Inner {
                tracer: provider.tracer("auditchain"),
                link_limit,
            })),
        }
    }

    /// Whether spans are recorded.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts an internal span as a child of the current context and makes
    /// it current until the returned guard ends it. `None` when tracing is off.
    pub fn enter(&self, name: &'static str, attributes: Vec<KeyValue>) -> Option<SpanGuard> {
        self.enter_under(None, name, attributes)
    }

    /// The current context (`None` when tracing is off), to parent work
    /// that happens later on its behalf: a restore runs after the
    /// assignment callback that asked for it has returned.
    pub fn current(&self) -> Option<Context> {
        self.inner.as_ref().map(|_| Context::current())
    }

    /// Like [`Traces::enter`], with `parent` (the current context when
    /// `None`) as the parent.
    pub fn enter_under(
        &self,
        parent: Option<&Context>,
        name: &'static str,
        attributes: Vec<KeyValue>,
    ) -> Option<SpanGuard> {
        let inner = self.inner.as_ref()?;
        let current;
        let parent = match parent {
            Some(p) => p,
            None => {
                current = Context::current();
                &current
            }
        };
        let span = inner
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(&inner.tracer, parent);
        let cx = parent.with_span(span);
        Some(SpanGuard {
            _attached: cx.clone().attach(),
            cx,
        })
    }

    /// A collector for the open transaction's links; empty when tracing is off.
    pub fn links(&self) -> TxnLinks {
        TxnLinks {
            limit: self.inner.as_ref().map_or(0, |i| i.link_limit),
            ..TxnLinks::default()
        }
    }

    /// Records a finished transaction as one consumer span from `txn.started`
    /// to now, linked to the trace contexts of its records.
    pub fn transaction(&self, txn: TxnSpan<'_>) {
        let Some(inner) = &self.inner else {
            return;
        };
        let (result, status) = match txn.outcome {
            TxnOutcome::Committed => ("committed", Status::Ok),
            TxnOutcome::Aborted => ("aborted", Status::error("transaction aborted")),
            TxnOutcome::Failed(message) => ("failed", Status::error(message)),
        };
        let attributes = vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.name", txn.topic.to_string()),
            KeyValue::new("messaging.consumer.group.name", txn.group.to_string()),
            KeyValue::new("messaging.batch.message_count", txn.records as i64),
            KeyValue::new("auditchain.transaction.result", result),
            KeyValue::new("auditchain.partitions", partitions_value(&txn.partitions)),
            KeyValue::new("auditchain.records.chained", txn.chained as i64),
            KeyValue::new("auditchain.records.quarantined", txn.quarantined as i64),
            KeyValue::new("auditchain.anchors", txn.anchors as i64),
            KeyValue::new("auditchain.records.traced", txn.links.traced as i64),
            KeyValue::new("auditchain.links.dropped", txn.links.dropped as i64),
        ];
        let mut span = inner
            .tracer
            .span_builder(TRANSACTION_SPAN)
            .with_kind(SpanKind::Consumer)
            .with_start_time(txn.started)
            .with_attributes(attributes)
            .with_links(txn.links.links)
            .start(&inner.tracer);
        span.set_status(status);
        span.end();
    }
}

/// An entered span; dropping it ends the span and restores the previous
/// current context.
pub struct SpanGuard {
    cx: Context,
    _attached: ContextGuard,
}

impl std::fmt::Debug for SpanGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanGuard")
            .field("span", self.cx.span().span_context())
            .finish()
    }
}

impl SpanGuard {
    /// Adds attributes known only once the work is done.
    pub fn set_attributes(&self, attributes: Vec<KeyValue>) {
        self.cx.span().set_attributes(attributes);
    }

    /// Marks the span failed with `message`.
    pub fn fail(&self, message: &dyn std::fmt::Display) {
        self.cx
            .span()
            .set_status(Status::error(message.to_string()));
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}

/// How a transaction ended.
#[derive(Debug, Clone)]
pub enum TxnOutcome {
    /// Committed.
    Committed,
    /// Aborted (after an abortable error, a lost assignment or a rewind).
    Aborted,
    /// The commit failed with this error; an abort or a new session follows.
    Failed(String),
}

/// What a transaction span reports.
#[derive(Debug)]
pub struct TxnSpan<'a> {
    /// When the first record was written in the transaction.
    pub started: SystemTime,
    /// The input topic.
    pub topic: &'a str,
    /// The consumer group.
    pub group: &'a str,
    /// Input partitions with records in the transaction.
    pub partitions: Vec<i32>,
    /// Input records in the transaction.
    pub records: u64,
    /// Of which chained.
    pub chained: u64,
    /// Of which quarantined.
    pub quarantined: u64,
    /// Anchors written.
    pub anchors: u64,
    /// The producers' trace contexts.
    pub links: TxnLinks,
    /// How it ended.
    pub outcome: TxnOutcome,
}

/// The links of one transaction: one per distinct producer span context,
/// up to the span link limit.
#[derive(Debug, Default)]
pub struct TxnLinks {
    links: Vec<Link>,
    seen: HashSet<(TraceId, SpanId)>,
    limit: usize,
    /// Records that carried a `traceparent` header.
    pub traced: u64,
    /// Records whose trace context was not linked because the limit was reached.
    pub dropped: u64,
}

impl TxnLinks {
    /// Notes the trace context in `headers` of the record at
    /// `partition`/`offset`. Malformed or absent contexts are ignored: a
    /// record's trace context is the producer's business and never a reason
    /// to quarantine it. Does nothing when tracing is off.
    pub fn add(&mut self, headers: &[Header], partition: i32, offset: i64) {
        if self.limit == 0 {
            return;
        }
        let carrier = HeaderCarrier(headers);
        if self.links.len() >= self.limit {
            // Past the limit a context is only counted, not parsed.
            if carrier.get(TRACEPARENT_HEADER).is_some() {
                self.traced += 1;
                self.dropped += 1;
            }
            return;
        }
        let Some(context) = remote_context(&carrier) else {
            return;
        };
        self.traced += 1;
        if self.seen.insert((context.trace_id(), context.span_id())) {
            self.links.push(Link::new(
                context,
                vec![
                    KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                    KeyValue::new("messaging.kafka.offset", offset),
                ],
                0,
            ));
        }
    }

    /// Links collected so far.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether no link was collected.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// The remote span context in a record's W3C trace-context headers, if any
/// and valid.
pub fn remote_context(headers: &dyn Extractor) -> Option<SpanContext> {
    if !well_formed_traceparent(headers.get(TRACEPARENT_HEADER)?) {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(headers);
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Whether `value` has the field sizes W3C Trace Context requires. The
/// SDK's propagator accepts short ids (it pads them), which would link a
/// span to a trace nobody started.
fn well_formed_traceparent(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let value = value.trim();
    let mut parts = value.splitn(5, '-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest = parts.next();
    hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && (rest.is_none() || version != "00")
}

/// Kafka record headers seen as a W3C trace-context carrier. Header names
/// are matched without regard to case, as HTTP does for these headers.
#[derive(Debug, Clone, Copy)]
pub struct HeaderCarrier<'a>(pub &'a [Header]);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The W3C `traceparent` value of a sampled span context, for producers.
pub fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// OTLP/HTTP export as the standard environment variables configure it.
#[derive(Debug)]
pub struct OtlpExport {
    provider: SdkTracerProvider,
    link_limit: usize,
    /// Where spans are sent, without credentials, for the start-up log.
    pub endpoint: String,
}

/// What the environment asks for, decided without side effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportPlan {
    /// Tracing off: no `OTEL_*` variable asks for it, or one turns it off.
    Off,
    /// Export to this endpoint (credentials removed) over OTLP/HTTP protobuf.
    Otlp {
        /// For the log line.
        endpoint: String,
        /// Spans' link limit (`OTEL_SPAN_LINK_COUNT_LIMIT`).
        link_limit: usize,
        /// Whether `service.name` comes from the environment.
        service_name_from_env: bool,
    },
}

fn set(var: &Option<String>) -> bool {
    var.as_deref().is_some_and(|v| !v.trim().is_empty())
}

fn env_error(variable: &str, message: impl Into<String>) -> Error {
    Error::Environment {
        variable: variable.to_string(),
        message: message.into(),
    }
}

/// Decides from the `OTEL_*` variables (read through `get`) whether and
/// where to export. Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER`
/// is `otlp` (then the OTLP default `http://localhost:4318` applies); it is
/// off when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
/// Settings this build cannot honour fail here, naming the variable.
pub fn export_plan(get: impl Fn(&str) -> Option<String>) -> Result<ExportPlan> {
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(ExportPlan::Off);
    }
    let exporter = get("OTEL_TRACES_EXPORTER");
    let explicit = match exporter.as_deref().map(str::trim) {
        None | Some("") => false,
        Some("none") => return Ok(ExportPlan::Off),
        Some("otlp") => true,
        Some(other) => {
            return Err(env_error(
                "OTEL_TRACES_EXPORTER",
                format!("`{other}` is not supported: use `otlp` (or `none`)"),
            ))
        }
    };
    let traces_endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let endpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT");
    if !explicit && !set(&traces_endpoint) && !set(&endpoint) {
        return Ok(ExportPlan::Off);
    }
    only(
        &get,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/protobuf",
        "auditchain exports OTLP over HTTP (`http/protobuf`, the collector's port 4318)",
    )?;
    only(
        &get,
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "none",
        "leave it unset or `none`",
    )?;
    let (url, variable) = if set(&traces_endpoint) {
        (
            traces_endpoint.unwrap_or_default(),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        )
    } else if set(&endpoint) {
        (endpoint.unwrap_or_default(), "OTEL_EXPORTER_OTLP_ENDPOINT")
    } else {
        ("http://localhost:4318".to_string(), "OTEL_TRACES_EXPORTER")
    };
    let endpoint = redacted_endpoint(url.trim()).ok_or_else(|| {
        env_error(
            variable,
            "expected an http:// or https:// URL, e.g. http://otel-collector:4318",
        )
    })?;
    let link_limit = match get("OTEL_SPAN_LINK_COUNT_LIMIT") {
        None => DEFAULT_LINK_LIMIT,
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            env_error(
                "OTEL_SPAN_LINK_COUNT_LIMIT",
                format!("`{v}` is not a non-negative integer"),
            )
        })?,
    };
    let service_name_from_env = set(&get("OTEL_SERVICE_NAME"))
        || get("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
            a.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    Ok(ExportPlan::Otlp {
        endpoint,
        link_limit,
        service_name_from_env,
    })
}

/// Fails unless the effective value of a setting — the signal-specific
/// variable when set, the general one otherwise, as the OTLP exporter
/// reads them — is unset or `allowed`.
fn only(
    get: &impl Fn(&str) -> Option<String>,
    specific: &str,
    general: &str,
    allowed: &str,
    hint: &str,
) -> Result<()> {
    let (variable, value) = match get(specific) {
        Some(v) if !v.trim().is_empty() => (specific, v),
        _ => (general, get(general).unwrap_or_default()),
    };
    match value.trim() {
        "" => Ok(()),
        v if v == allowed => Ok(()),
        other => Err(env_error(
            variable,
            format!("`{other}` is not supported: {hint}"),
        )),
    }
}

/// `url` with any user information and query removed (they may hold
/// credentials), or `None` if it is not an http(s) URL.
fn redacted_endpoint(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host}{path}"))
}

impl OtlpExport {
    /// Builds the exporter the process environment asks for; `None` when
    /// tracing is off. `instance_id` becomes `service.instance.id`.
    pub fn from_env(instance_id: &str) -> Result<Option<OtlpExport>> {
        let plan = export_plan(|v| std::env::var(v).ok())?;
        let ExportPlan::Otlp {
            endpoint,
            link_limit,
            service_name_from_env,
        } = plan
        else {
            return Ok(None);
        };
        // Endpoint, headers and timeout are read from the environment by
        // the exporter itself, as the OTLP exporter specification says.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| {
                env_error(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("cannot build the OTLP exporter: {e}"),
                )
            })?;
        let mut resource = Resource::builder().with_attributes([
            KeyValue::new("service.instance.id", instance_id.to_string()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ]);
        if !service_name_from_env {
            resource = resource.with_service_name("auditchain");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(OtlpExport {
            provider,
            link_limit,
            endpoint,
        }))
    }

    /// The processor's handle on this exporter.
    pub fn traces(&self) -> Traces {
        Traces::new(&self.provider, self.link_limit)
    }

    /// Sends what is buffered and stops the export thread. Blocks up to the
    /// export timeout; call it off any async runtime thread.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OpenTelemetry exporter did not shut down cleanly");
        }
    }
}

/// Attribute value of a list of partitions.
pub fn partitions_value(partitions: &[i32]) -> Value {
    Value::Array(Array::I64(
        partitions.iter().map(|p| i64::from(*p)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::StringValue;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

    fn text(value: &'static str) -> Value {
        Value::String(StringValue::from(value))
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
            .collect()
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn setup(limit: usize) -> (SdkTracerProvider, InMemorySpanExporter, Traces) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let traces = Traces::new(&provider, limit);
        (provider, exporter, traces)
    }

    fn finished(provider: &SdkTracerProvider, exporter: &InMemorySpanExporter) -> Vec<SpanData> {
        provider.force_flush().expect("flush");
        exporter.get_finished_spans().expect("spans")
    }

    fn attr(span: &SpanData, key: &str) -> Option<Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    #[test]
    fn reads_a_w3c_traceparent_from_record_headers() {
        let h = headers(&[
            ("auditchain-sig", "x"),
            ("TraceParent", PARENT),
            ("tracestate", "vendor=1"),
        ]);
        let sc = remote_context(&HeaderCarrier(&h)).expect("valid context");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote());
        assert!(sc.is_sampled());
        assert_eq!(sc.trace_state().get("vendor"), Some("1"));
        assert_eq!(traceparent(&sc), PARENT);
    }

    #[test]
    fn malformed_or_absent_trace_contexts_are_ignored() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let h = headers(&[("traceparent", bad)]);
            assert!(remote_context(&HeaderCarrier(&h)).is_none(), "{bad:?}");
        }
        let not_utf8: Vec<Header> = vec![("traceparent".into(), Some(vec![0xff, 0xfe]))];
        assert!(remote_context(&HeaderCarrier(&not_utf8)).is_none());
        assert!(remote_context(&HeaderCarrier(&[])).is_none());
        // A later version may append fields; the known ones are still read.
        let future = headers(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later",
        )]);
        assert!(remote_context(&HeaderCarrier(&future)).is_some());
    }

    #[test]
    fn links_are_distinct_and_capped_with_the_excess_counted() {
        let (_p, _e, traces) = setup(2);
        let mut links = traces.links();
        let same = headers(&[("traceparent", PARENT)]);
        links.add(&same, 0, 1);
        links.add(&same, 0, 2);
        assert_eq!((links.len(), links.traced, links.dropped), (1, 2, 0));
        links.add(&headers(&[("traceparent", "nonsense")]), 0, 3);
        assert_eq!((links.len(), links.traced), (1, 2), "invalid is not traced");
        links.add(&[], 0, 4);
        assert_eq!(links.traced, 2);
        let other = |i: u8| {
            headers(&[(
                "traceparent",
                &format!("00-4bf92f3577b34da6a3ce929d0e0e47{i:02x}-00f067aa0ba902b7-01"),
            )])
        };
        links.add(&other(1), 1, 5);
        links.add(&other(2), 1, 6);
        links.add(&other(3), 1, 7);
        assert_eq!((links.len(), links.traced, links.dropped), (2, 5, 2));
    }

    #[test]
    fn tracing_off_collects_and_emits_nothing() {
        let traces = Traces::off();
        assert!(!traces.enabled());
        let mut links = traces.links();
        links.add(&headers(&[("traceparent", PARENT)]), 0, 0);
        assert_eq!((links.len(), links.traced), (0, 0));
        assert!(traces.enter(RESTORE_SPAN, vec![]).is_none());
    }

    #[test]
    fn a_transaction_span_carries_counts_partitions_and_links() {
        let (provider, exporter, traces) = setup(128);
        let mut links = traces.links();
        links.add(&headers(&[("traceparent", PARENT)]), 3, 41);
        let started = SystemTime::now();
        traces.transaction(TxnSpan {
            started,
            topic: "audit-events",
            group: "auditchain",
            partitions: vec![1, 3],
            records: 10,
            chained: 8,
            quarantined: 2,
            anchors: 2,
            links,
            outcome: TxnOutcome::Committed,
        });
        let spans = finished(&provider, &exporter);
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, TRANSACTION_SPAN);
        assert_eq!(span.span_kind, SpanKind::Consumer);
        assert_eq!(span.start_time, started);
        assert_eq!(span.status, Status::Ok);
        assert_eq!(
            attr(span, "auditchain.partitions"),
            Some(Value::Array(Array::I64(vec![1, 3])))
        );
        assert_eq!(
            attr(span, "auditchain.records.chained"),
            Some(Value::I64(8))
        );
        assert_eq!(
            attr(span, "auditchain.records.quarantined"),
            Some(Value::I64(2))
        );
        assert_eq!(
            attr(span, "messaging.batch.message_count"),
            Some(Value::I64(10))
        );
        assert_eq!(
            attr(span, "auditchain.transaction.result"),
            Some(text("committed"))
        );
        assert_eq!(span.links.links.len(), 1);
        let link = &span.links.links[0];
        assert_eq!(
            link.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(link
            .attributes
            .contains(&KeyValue::new("messaging.kafka.offset", 41)));
        // A transaction is a root of its own trace, not a child of a producer.
        assert_ne!(
            span.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn failed_and_aborted_transactions_are_errors() {
        let (provider, exporter, traces) = setup(128);
        let reason = "broker fenced the producer";
        for outcome in [TxnOutcome::Aborted, TxnOutcome::Failed(reason.to_string())] {
            traces.transaction(TxnSpan {
                started: SystemTime::now(),
                topic: "t",
                group: "g",
                partitions: vec![0],
                records: 1,
                chained: 1,
                quarantined: 0,
                anchors: 0,
                links: traces.links(),
                outcome,
            });
        }
        let spans = finished(&provider, &exporter);
        assert_eq!(spans[0].status, Status::error("transaction aborted"));
        assert_eq!(spans[1].status, Status::error(reason));
        assert_eq!(
            attr(&spans[1], "auditchain.transaction.result"),
            Some(text("failed"))
        );
    }

    #[test]
    fn entered_spans_nest_and_end_on_drop() {
        let (provider, exporter, traces) = setup(128);
        {
            let outer = traces
                .enter(
                    REBALANCE_SPAN,
                    vec![KeyValue::new("auditchain.rebalance.kind", "assign")],
                )
                .expect("on");
            {
                let inner = traces.enter(RESTORE_SPAN, vec![]).expect("on");
                inner.set_attributes(vec![KeyValue::new("auditchain.tenants", 7)]);
                inner.fail(&"state topic unreadable");
            }
            outer.set_attributes(vec![KeyValue::new(
                "auditchain.partitions",
                partitions_value(&[0, 2]),
            )]);
        }
        let spans = finished(&provider, &exporter);
        let restore = spans
            .iter()
            .find(|s| s.name == RESTORE_SPAN)
            .expect("restore");
        let rebalance = spans
            .iter()
            .find(|s| s.name == REBALANCE_SPAN)
            .expect("rebalance");
        assert_eq!(restore.parent_span_id, rebalance.span_context.span_id());
        assert_eq!(
            restore.span_context.trace_id(),
            rebalance.span_context.trace_id()
        );
        assert_eq!(restore.status, Status::error("state topic unreadable"));
        assert_eq!(attr(restore, "auditchain.tenants"), Some(Value::I64(7)));
        assert!(!Context::current().has_active_span(), "context restored");
    }

    fn plan(vars: &[(&str, &str)]) -> Result<ExportPlan> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        export_plan(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn export_is_off_unless_the_environment_asks_for_it() {
        assert_eq!(plan(&[]).expect("plan"), ExportPlan::Off);
        assert_eq!(
            plan(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", " ")
            ])
            .expect("plan"),
            ExportPlan::Off
        );
        assert_eq!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true")
            ])
            .expect("plan"),
            ExportPlan::Off
        );
        assert_eq!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_EXPORTER", "none")
            ])
            .expect("plan"),
            ExportPlan::Off
        );
    }

    #[test]
    fn export_is_on_with_an_endpoint_and_never_logs_credentials() {
        assert_eq!(
            plan(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://user:secret@collector:4318/base?token=t"
            )])
            .expect("plan"),
            ExportPlan::Otlp {
                endpoint: "https://collector:4318/base".into(),
                link_limit: 128,
                service_name_from_env: false,
            }
        );
        assert_eq!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:4318/v1/traces"
                ),
                ("OTEL_SPAN_LINK_COUNT_LIMIT", "16"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,service.name=audit"
                ),
            ])
            .expect("plan"),
            ExportPlan::Otlp {
                endpoint: "http://traces:4318/v1/traces".into(),
                link_limit: 16,
                service_name_from_env: true,
            }
        );
        assert_eq!(
            plan(&[("OTEL_TRACES_EXPORTER", "otlp")]).expect("plan"),
            ExportPlan::Otlp {
                endpoint: "http://localhost:4318".into(),
                link_limit: 128,
                service_name_from_env: false,
            }
        );
    }

    #[test]
    fn unsupported_settings_fail_naming_the_variable() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (
                &[("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                ],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_SPAN_LINK_COUNT_LIMIT", "many"),
                ],
                "OTEL_SPAN_LINK_COUNT_LIMIT",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ],
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ),
        ];
        for (vars, variable) in cases {
            let err = plan(vars).expect_err("must fail").to_string();
            assert!(err.contains(variable), "{err}");
        }
        // The signal-specific variable wins over the general one.
        assert!(plan(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ])
        .is_ok());
        let err = plan(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ])
        .expect_err("specific wins when it is the unsupported one")
        .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"),
            "{err}"
        );
    }
}
