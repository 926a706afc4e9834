//! OpenTelemetry traces: every transaction is a span linked to the
//! `traceparent` of each record it processed, restores are children of the
//! rebalance that caused them, and the binary exports all of it over
//! OTLP/HTTP when (and only when) the standard `OTEL_*` variables say so.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditchain::telemetry::{Traces, REBALANCE_SPAN, RESTORE_SPAN, TRANSACTION_SPAN};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use prost::Message as _;

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(v)) => v,
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

fn ints(span: &SpanData, key: &str) -> Vec<i64> {
    match attr(span, key) {
        Some(Value::Array(Array::I64(v))) => v,
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

/// (trace id, span id) of a produced `traceparent`.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    (parts[1].to_string(), parts[2].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_link_every_traced_record_and_restores_nest_in_rebalances() {
    let fx = common::Fixture::new(3, false).await;
    let exporter = InMemorySpanExporter::default();
    // Room for every link, so the test can demand that none is missing.
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_max_links_per_span(10_000)
        .build();
    let running = fx.start_traced("traced-1", Traces::new(&provider, 10_000));
    let mut spec = fx.spec(300, 6, 1);
    spec.traceparent = true;
    let report = fx.produce(&spec).await;
    assert_eq!(report.records.len(), 310);
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let summary = running.stop();
    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");

    // Every record is linked exactly once, from the transaction that
    // committed it, with its partition and offset on the link.
    let produced: BTreeMap<(String, String), (i32, i64)> = report
        .records
        .iter()
        .map(|r| {
            let tp = r.traceparent.as_deref().expect("traceparent produced");
            (ids(tp), (r.partition, r.offset))
        })
        .collect();
    let transactions: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == TRANSACTION_SPAN)
        .collect();
    assert_eq!(transactions.len() as u64, summary.stats.commits);
    let mut linked = BTreeMap::new();
    let (mut chained, mut quarantined, mut records, mut anchors) = (0, 0, 0, 0);
    for t in &transactions {
        assert_eq!(t.span_kind, SpanKind::Consumer);
        assert_eq!(t.status, Status::Ok);
        assert_eq!(
            attr(t, "auditchain.transaction.result"),
            Some(Value::from("committed"))
        );
        assert_eq!(int(t, "auditchain.links.dropped"), 0);
        assert!(t.start_time <= t.end_time);
        let mut link_partitions = BTreeSet::new();
        for link in t.links.iter() {
            let key = (
                link.span_context.trace_id().to_string(),
                link.span_context.span_id().to_string(),
            );
            assert!(link.span_context.is_remote());
            let partition: i32 = link
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "messaging.destination.partition.id")
                .map(|kv| kv.value.as_str().parse().expect("partition"))
                .expect("partition on link");
            let offset = link
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "messaging.kafka.offset")
                .map(|kv| match kv.value {
                    Value::I64(o) => o,
                    ref v => panic!("offset {v:?}"),
                })
                .expect("offset on link");
            link_partitions.insert(i64::from(partition));
            assert!(
                linked.insert(key, (partition, offset)).is_none(),
                "a record linked twice"
            );
        }
        let partitions: BTreeSet<i64> = ints(t, "auditchain.partitions").into_iter().collect();
        assert_eq!(partitions, link_partitions);
        assert_eq!(
            int(t, "auditchain.records.traced"),
            t.links.len() as i64,
            "one distinct context per record"
        );
        chained += int(t, "auditchain.records.chained");
        quarantined += int(t, "auditchain.records.quarantined");
        records += int(t, "messaging.batch.message_count");
        anchors += int(t, "auditchain.anchors");
    }
    assert_eq!(linked, produced);
    assert_eq!((chained, quarantined, records), (300, 10, 310));
    assert_eq!(anchors as u64, summary.stats.anchors);

    // The first assignment restores all three partitions inside its
    // rebalance span; leaving the group shows as a revoke.
    let rebalances: Vec<&SpanData> = spans.iter().filter(|s| s.name == REBALANCE_SPAN).collect();
    let assign = rebalances
        .iter()
        .find(|s| attr(s, "auditchain.rebalance.kind") == Some(Value::from("assign")))
        .expect("an assign span");
    assert_eq!(ints(assign, "auditchain.partitions"), vec![0, 1, 2]);
    assert!(rebalances
        .iter()
        .any(|s| attr(s, "auditchain.rebalance.kind") == Some(Value::from("revoke"))));
    let restore = spans
        .iter()
        .find(|s| s.name == RESTORE_SPAN)
        .expect("a restore span");
    assert_eq!(restore.parent_span_id, assign.span_context.span_id());
    assert_eq!(
        restore.span_context.trace_id(),
        assign.span_context.trace_id()
    );
    assert_eq!(ints(restore, "auditchain.partitions"), vec![0, 1, 2]);
    assert_eq!(int(restore, "auditchain.tenants"), 0, "a fresh trail");

    let (_, verdict) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&verdict);
}

/// What a minimal OTLP/HTTP receiver got.
type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// An OTLP/HTTP trace receiver on a free loopback port: the wire format a
/// collector accepts, decoded with the protocol's own message types.
async fn otlp_receiver() -> (String, Received) {
    use axum::body::Bytes;
    use axum::http::StatusCode;
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        sink.lock().expect("lock").push(request);
                        (
                            StatusCode::OK,
                            [("content-type", "application/x-protobuf")],
                            Vec::new(),
                        )
                    }
                    Err(_) => (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "text/plain")],
                        b"not an ExportTraceServiceRequest".to_vec(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), received)
}

fn string_attr(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_exports_linked_spans_over_otlp_http_when_configured() {
    let fx = common::Fixture::new(2, false).await;
    let (endpoint, received) = otlp_receiver().await;
    let mut child = fx.spawn_with(
        "otlp-1",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    );
    let mut spec = fx.spec(120, 4, 0);
    spec.traceparent = true;
    let report = fx.produce(&spec).await;
    let total = report.records.len() as i64;
    fx.wait_for(
        "the group to commit every record",
        || child.assert_alive(),
        |lag| common::progressed(lag, total),
        Duration::from_secs(120),
    )
    .await;
    // SIGTERM: the processor commits, leaves the group and flushes its spans.
    child.stop();

    let requests = received.lock().expect("lock").clone();
    assert!(!requests.is_empty(), "no OTLP request arrived");
    let mut linked = BTreeSet::new();
    let mut names = BTreeSet::new();
    for request in &requests {
        for rs in &request.resource_spans {
            let resource = rs.resource.as_ref().expect("resource");
            assert_eq!(
                string_attr(&resource.attributes, "service.name").as_deref(),
                Some("auditchain")
            );
            assert_eq!(
                string_attr(&resource.attributes, "service.instance.id").as_deref(),
                Some("otlp-1")
            );
            assert_eq!(
                string_attr(&resource.attributes, "deployment.environment").as_deref(),
                Some("test")
            );
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                names.insert(span.name.clone());
                if span.name == TRANSACTION_SPAN {
                    for link in &span.links {
                        linked.insert((hex::encode(&link.trace_id), hex::encode(&link.span_id)));
                    }
                }
            }
        }
    }
    let produced: BTreeSet<(String, String)> = report
        .records
        .iter()
        .map(|r| ids(r.traceparent.as_deref().expect("traceparent")))
        .collect();
    assert_eq!(linked, produced);
    for name in [TRANSACTION_SPAN, REBALANCE_SPAN, RESTORE_SPAN] {
        assert!(names.contains(name), "no {name} span in {names:?}");
    }
}

#[test]
fn an_unsupported_otel_setting_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fx_config = dir.path().join("c.toml");
    // Start-up checks the OTEL_* variables before it connects anywhere, so
    // an unreachable broker is fine here.
    std::fs::write(
        &fx_config,
        "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n\
         [signing]\nkey_file = \"/nonexistent.secret\"\nkey_id = \"p\"\n\
         [producer_keys]\nfile = \"/nonexistent.toml\"\n",
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditchain"))
        .args(["run", "--config"])
        .arg(&fx_config)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && stderr.contains("http/protobuf"),
        "{stderr}"
    );
}
