//! `auditchain topics`: create missing output topics, check existing ones
//! (sizes, and that the trail keeps its records for good), and show what
//! each trail topic keeps.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `topics`.
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    /// The processor's configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Also create the input topic, with this many partitions, if it does not exist.
    #[arg(long)]
    create_input: Option<i32>,
}

/// Creates what is missing and prints the limits derived from the input and
/// the retention of each trail topic.
pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let config = auditchain::config::Config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    if let Some(partitions) = args.create_input {
        if auditchain::kafka::create_topic_if_missing(&config, &config.topics.input, partitions)
            .await?
        {
            println!(
                "topics: created input `{}` with {partitions} partitions",
                config.topics.input
            );
        }
    }
    let report = auditchain::kafka::ensure_topics(&config).await?;
    println!(
        "topics: input `{}` has {} partitions and max.message.bytes {}; output records up to {} bytes; created: {}",
        config.topics.input,
        report.input_partitions,
        report.input_max_message_bytes,
        report.max_output_record_bytes,
        if report.created.is_empty() {
            "none".to_string()
        } else {
            report.created.join(", ")
        }
    );
    for (topic, retention, warning) in &report.trail_retention {
        println!("topics: trail `{topic}`: {}", retention.describe());
        if let Some(w) = warning {
            println!("topics: WARNING: {w}");
        }
    }
    Ok(())
}
