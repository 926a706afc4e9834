//! `auditchain acls --print`: the least-privilege ACLs as `kafka-acls`
//! commands.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `acls`.
#[derive(Debug, clap::Args)]
pub struct AclsArgs {
    /// The processor's configuration file (topics, group id).
    #[arg(long, short)]
    config: PathBuf,
    /// Print the commands (the only mode: review them, then run them).
    #[arg(long, required = true)]
    print: bool,
    /// The processor's principal (`name` means `User:name`).
    #[arg(long, value_name = "PRINCIPAL")]
    processor: Option<String>,
    /// The principal of the services that publish events.
    #[arg(long, value_name = "PRINCIPAL")]
    producer: Option<String>,
    /// The auditors' principal (verify, prove).
    #[arg(long, value_name = "PRINCIPAL")]
    auditor: Option<String>,
    /// Let the producer use transactional ids with this prefix.
    #[arg(long, value_name = "PREFIX", requires = "producer")]
    producer_transactional_id_prefix: Option<String>,
    /// Bootstrap servers for kafka-acls (default: the config's).
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// Client properties file with the administrator's credentials (--command-config).
    #[arg(long)]
    command_config: Option<String>,
    /// The kafka-acls executable.
    #[arg(long, default_value = "kafka-acls.sh")]
    kafka_acls: String,
}

/// Prints the script.
pub fn run(args: AclsArgs) -> anyhow::Result<()> {
    let config = auditchain::config::Config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    anyhow::ensure!(
        args.processor.is_some() || args.producer.is_some() || args.auditor.is_some(),
        "name at least one principal: --processor, --producer, --auditor"
    );
    let who = auditchain::acls::Principals {
        processor: args.processor,
        producer: args.producer,
        auditor: args.auditor,
        producer_transactional_id_prefix: args.producer_transactional_id_prefix,
    };
    let target = auditchain::acls::Target {
        command: args.kafka_acls,
        bootstrap_server: args
            .bootstrap_server
            .unwrap_or_else(|| config.kafka.bootstrap_servers.clone()),
        command_config: args.command_config,
    };
    debug_assert!(args.print);
    print!("{}", auditchain::acls::script(&config, &who, &target));
    Ok(())
}
