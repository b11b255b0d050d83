use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The tau2 operator.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the Tau2Pipeline CRD (to crds/ in the repository, or to stdout with `--stdout`).
    Crd {
        /// Directory to write the CRD file into.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds"))]
        out_dir: PathBuf,
        /// Print the CRD instead of writing it.
        #[arg(long)]
        stdout: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir, stdout } => {
            let yaml = tau2_operator::crdgen::crd_yaml().context("serialising the CRD")?;
            if stdout {
                print!("{yaml}");
            } else {
                let path = out_dir.join(tau2_operator::crdgen::CRD_FILE);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
