//! `perly bench`: placeholder replaced below.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}
pub async fn run(_s: crate::config::Settings, _a: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
