//! Rewrites `schemas/test-vectors/chain-v1.json` from the chain module.
//! Run from the repository root: `cargo run --example chain_vectors`.

fn main() -> std::io::Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/test-vectors/chain-v1.json");
    std::fs::write(&path, auditchain::chain::vectors::render())?;
    println!("wrote {}", path.display());
    Ok(())
}
