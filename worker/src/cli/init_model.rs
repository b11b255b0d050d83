//! `tau2-worker init-model`: a tiny random Qwen3 of the real architecture
//! with the real tokenizer, for tests and the embedded demo.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tau2_chat::ChatTokenizer;
use tau2_model::init;

#[derive(clap::Args)]
pub struct InitModel {
    /// Directory with the tokenizer (`tokenizer.json`, `tokenizer_config.json`).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Where to write the checkpoint (created; must be empty or absent).
    #[arg(long)]
    out: PathBuf,
    /// tiny: hidden 64, 2 layers; small: hidden 256, 4 layers.
    #[arg(long, default_value = "tiny", value_parser = ["tiny", "small"])]
    size: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Separate input and output embeddings (Qwen3-4B ties them).
    #[arg(long)]
    untied: bool,
}

/// Token strings that end an assistant turn in Qwen3's format.
const STOP_TOKENS: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];

pub fn run(args: InitModel) -> anyhow::Result<()> {
    let size = if args.size == "small" {
        init::Size::Small
    } else {
        init::Size::Tiny
    };
    let vocab = create(&args.tokenizer, &args.out, size, !args.untied, args.seed)?;
    eprintln!(
        "wrote a {} Qwen3 ({vocab} vocabulary rows, seed {}) to {}",
        args.size,
        args.seed,
        args.out.display()
    );
    Ok(())
}

/// Writes a random Qwen3 of `size` with the tokenizer of `tokenizer_dir`
/// and the 2507 chat template into `out` (absent or empty); returns its
/// vocabulary rows.
pub fn create(
    tokenizer_dir: &Path,
    out: &Path,
    size: init::Size,
    tied: bool,
    seed: u64,
) -> anyhow::Result<i64> {
    if out.exists() && out.read_dir()?.next().is_some() {
        anyhow::bail!("{} exists and is not empty", out.display());
    }
    let tokenizer = ChatTokenizer::from_dir(tokenizer_dir)
        .with_context(|| format!("loading the tokenizer from {}", tokenizer_dir.display()))?;
    let stops: Vec<i64> = STOP_TOKENS
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .map(i64::from)
        .collect();
    anyhow::ensure!(
        !stops.is_empty(),
        "the tokenizer has none of {STOP_TOKENS:?}: not a Qwen3 tokenizer"
    );
    let files = init::ChatFiles {
        tokenizer_dir,
        // The 2507 instruct format (prefix-stable, tools, no <think>).
        chat_template: tau2_chat::QWEN3_INSTRUCT_2507_TEMPLATE,
        stop_ids: &stops,
        vocab_size: tokenizer.vocab_size(),
    };
    let cfg = init::write_chat_model(out, size, tied, seed, &files).context("writing the model")?;
    Ok(cfg.vocab_size)
}
