//! `auditchain keygen`: a new Ed25519 key pair.

use std::path::PathBuf;

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Directory to write the files into.
    #[arg(long)]
    dir: PathBuf,
    /// The key id (file name and the id producers or anchors carry).
    #[arg(long)]
    key_id: String,
}

/// Writes DIR/KEY_ID.secret (mode 0600) and DIR/KEY_ID.pub.
pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    let generated = auditchain::keys::keygen(&args.dir, &args.key_id)?;
    println!(
        "keygen: wrote {} (secret, mode 0600) and {}\npublic key: {}",
        generated.secret_path.display(),
        generated.public_path.display(),
        hex::encode(generated.public_key.to_bytes())
    );
    Ok(())
}
