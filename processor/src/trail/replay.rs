//! `auditchain quarantine replay`: re-publishes selected quarantined records
//! to the input topic, key, value and headers as they arrived, in one
//! transaction, once their cause is fixed (DESIGN.md §5). They then chain as
//! new input records; the original quarantine entries stay in the trail.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::base_client_config;
use crate::records::QuarantineRecord;
use crate::route::Reason;
use crate::sink::headers_from;
use crate::verify::read_topic;

/// Which quarantined records to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these reasons (any when empty).
    pub reasons: Vec<Reason>,
    /// Only records keyed by this tenant.
    pub tenant: Option<String>,
    /// Only these source partitions (any when empty).
    pub partitions: Vec<u32>,
    /// Only source offsets in this range (inclusive).
    pub offsets: Option<(u64, u64)>,
}

impl Selection {
    fn matches(&self, q: &QuarantineRecord) -> bool {
        (self.reasons.is_empty() || self.reasons.contains(&q.reason))
            && self
                .tenant
                .as_ref()
                .is_none_or(|t| q.raw_key.as_deref() == Some(t.as_bytes()))
            && (self.partitions.is_empty() || self.partitions.contains(&q.source_partition))
            && self
                .offsets
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&q.source_offset))
    }
}

/// What a replay found (and, unless a dry run, re-published).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Matching records by reason.
    pub by_reason: BTreeMap<&'static str, usize>,
    /// Matching records by record key (lossy UTF-8; `<none>` without key).
    pub by_key: BTreeMap<String, usize>,
    /// Records re-published (0 for a dry run).
    pub published: usize,
}

/// Selects quarantined records and, unless `dry_run`, re-publishes them.
pub fn replay(config: &Config, selection: &Selection, dry_run: bool) -> Result<Outcome> {
    let mut selected: Vec<QuarantineRecord> = Vec::new();
    let mut undecodable = 0usize;
    read_topic(
        config,
        &config.topics.quarantine,
        |_, _, _, v| match QuarantineRecord::decode(v.unwrap_or_default()) {
            Ok(q) if q.source_topic == config.topics.input && selection.matches(&q) => {
                selected.push(q)
            }
            Ok(_) => {}
            Err(_) => undecodable += 1,
        },
    )?;
    if undecodable > 0 {
        tracing::warn!(
            undecodable,
            "quarantine records that do not decode were skipped"
        );
    }
    let mut outcome = Outcome::default();
    for q in &selected {
        *outcome.by_reason.entry(q.reason.code()).or_default() += 1;
        let key = q.raw_key.as_deref().map_or_else(
            || "<none>".to_string(),
            |k| String::from_utf8_lossy(k).into_owned(),
        );
        *outcome.by_key.entry(key).or_default() += 1;
    }
    if dry_run || selected.is_empty() {
        return Ok(outcome);
    }

    let mut cc = base_client_config(config, "auditchain-replay");
    cc.set(
        "transactional.id",
        format!(
            "{}-replay-{}",
            config.kafka.group_id,
            uuid::Uuid::new_v4().simple()
        ),
    )
    .set("enable.idempotence", "true");
    let producer: ThreadedProducer<_> = cc
        .create()
        .map_err(|e| Error::kafka("creating the replay producer", e))?;
    let timeout = Duration::from_secs(60);
    producer
        .init_transactions(timeout)
        .map_err(|e| Error::kafka("initialising the replay transaction", e))?;
    producer
        .begin_transaction()
        .map_err(|e| Error::kafka("beginning the replay transaction", e))?;
    let send_all = || -> Result<()> {
        for q in &selected {
            let headers = headers_from(q.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
            // Back to the partition it came from: the tenant's chain there.
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&config.topics.input)
                .partition(q.source_partition as i32)
                .headers(headers);
            if let Some(v) = q.raw_value.as_deref() {
                record = record.payload(v);
            }
            if let Some(k) = q.raw_key.as_deref() {
                record = record.key(k);
            }
            producer
                .send(record)
                .map_err(|(e, _)| Error::kafka("re-publishing a quarantined record", e))?;
        }
        producer
            .commit_transaction(timeout)
            .map_err(|e| Error::kafka("committing the replay transaction", e))
    };
    if let Err(e) = send_all() {
        let _ = producer.abort_transaction(timeout);
        return Err(e);
    }
    outcome.published = selected.len();
    Ok(outcome)
}
