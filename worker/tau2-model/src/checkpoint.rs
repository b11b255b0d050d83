//! Hugging Face checkpoints: `config.json` plus safetensors weights, either
//! one `model.safetensors` or shards listed in `model.safetensors.index.json`.
//!
//! Loading memory-maps each file (libtorch's `from_file`, a private read-only
//! mapping: no unsafe code here, and no heap copy of the file) and copies
//! each tensor straight into its parameter, converting dtype and device.
//! Saving writes the safetensors format itself so that the header carries
//! `{"format": "pt"}` metadata, which transformers checks.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::qwen3::Qwen3;

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Files copied verbatim from the source checkpoint when saving, if present.
pub const COPIED_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
];

/// Writes a file and fsyncs it before returning.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| ModelError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ModelError::io(path, e))
}

fn dtype_kind(dtype: &str) -> Option<Kind> {
    match dtype {
        "F32" => Some(Kind::Float),
        "BF16" => Some(Kind::BFloat16),
        "F16" => Some(Kind::Half),
        "F64" => Some(Kind::Double),
        _ => None,
    }
}

fn kind_dtype(kind: Kind) -> Result<&'static str> {
    match kind {
        Kind::Float => Ok("F32"),
        Kind::BFloat16 => Ok("BF16"),
        Kind::Half => Ok("F16"),
        Kind::Double => Ok("F64"),
        k => Err(ModelError::Input(format!(
            "cannot save parameters of kind {k:?}"
        ))),
    }
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub kind: Kind,
    pub shape: Vec<i64>,
    /// Byte range relative to the start of the data section.
    pub begin: u64,
    pub end: u64,
}

/// Parsed safetensors header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Absolute offset of the data section (8 + header length).
    pub data_start: u64,
    pub tensors: Vec<TensorInfo>,
    pub metadata: Map<String, Value>,
}

/// Reads and checks the header of a safetensors file.
pub fn read_header(path: &Path) -> Result<Header> {
    let bad = |m: String| ModelError::checkpoint(path, m);
    let mut f = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let file_len = f.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| ModelError::io(path, e))?;
    let n = u64::from_le_bytes(len);
    if n > file_len.saturating_sub(8) || n > 100_000_000 {
        return Err(bad(format!(
            "safetensors header length {n} exceeds the file ({file_len} bytes)"
        )));
    }
    let mut text = vec![0u8; n as usize];
    f.read_exact(&mut text)
        .map_err(|e| ModelError::io(path, e))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let data_len = file_len - 8 - n;
    let mut tensors = Vec::new();
    let mut metadata = Map::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            metadata = entry.as_object().cloned().unwrap_or_default();
            continue;
        }
        let dtype = entry["dtype"].as_str().unwrap_or("?");
        let kind =
            dtype_kind(dtype).ok_or_else(|| bad(format!("{name}: unsupported dtype {dtype}")))?;
        let shape: Option<Vec<i64>> = entry["shape"]
            .as_array()
            .and_then(|a| a.iter().map(Value::as_i64).collect());
        let offsets: Option<Vec<u64>> = entry["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let (Some(shape), Some(&[begin, end])) = (shape, offsets.as_deref()) else {
            return Err(bad(format!("{name}: malformed header entry {entry}")));
        };
        let bytes = shape.iter().product::<i64>() as u64 * kind.elt_size_in_bytes() as u64;
        if begin > end || end > data_len || end - begin != bytes {
            return Err(bad(format!(
                "{name}: data offsets [{begin}, {end}) do not fit shape {shape:?}"
            )));
        }
        tensors.push(TensorInfo {
            name,
            kind,
            shape,
            begin,
            end,
        });
    }
    Ok(Header {
        data_start: 8 + n,
        tensors,
        metadata,
    })
}

/// The weight files of a checkpoint directory: the shards named by the
/// index (in first-use order), or the single file.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: index.clone(),
            source,
        })?;
        let map = v["weight_map"]
            .as_object()
            .ok_or_else(|| ModelError::checkpoint(&index, "no weight_map object"))?;
        let mut seen = HashSet::new();
        let mut files = Vec::new();
        for file in map.values() {
            let file = file.as_str().ok_or_else(|| {
                ModelError::checkpoint(&index, "weight_map values must be file names")
            })?;
            if seen.insert(file.to_string()) {
                files.push(dir.join(file));
            }
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(ModelError::checkpoint(
        dir,
        format!("neither {INDEX_FILE} nor {SINGLE_FILE} found"),
    ))
}

/// Copies the checkpoint's tensors into the model's parameters (matching HF
/// names and shapes; dtype and device are converted). Every parameter must
/// be present; extra tensors (such as `lm_head.weight` of a tied model) are
/// ignored.
pub fn load_weights(model: &Qwen3, dir: &Path) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let params: HashMap<&str, &Tensor> = model
        .named_parameters()
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    let mut loaded = HashSet::new();
    for file in weight_files(dir)? {
        let header = read_header(&file)?;
        let file_len = std::fs::metadata(&file)
            .map_err(|e| ModelError::io(&file, e))?
            .len();
        let path = file
            .to_str()
            .ok_or_else(|| ModelError::checkpoint(&file, "path is not valid UTF-8"))?;
        // The whole file as a memory-mapped u8 tensor.
        let map = Tensor::f_from_file(path, false, file_len as i64, (Kind::Uint8, Device::Cpu))?;
        for info in &header.tensors {
            let Some(param) = params.get(info.name.as_str()) else {
                tracing::debug!(tensor = %info.name, file = %file.display(), "ignoring tensor");
                continue;
            };
            if param.size() != info.shape {
                return Err(ModelError::checkpoint(
                    &file,
                    format!(
                        "{}: shape {:?}, the model expects {:?}",
                        info.name,
                        info.shape,
                        param.size()
                    ),
                ));
            }
            let start = (header.data_start + info.begin) as i64;
            let bytes = map.f_narrow(0, start, (info.end - info.begin) as i64)?;
            // Reinterpreting bytes needs an offset aligned to the element
            // size; safetensors pads its header to 8 so this is the rule.
            let bytes = if start % info.kind.elt_size_in_bytes() as i64 == 0 {
                bytes
            } else {
                bytes.copy()
            };
            let src = bytes
                .f_view_dtype(info.kind)?
                .f_view(info.shape.as_slice())?;
            param.shallow_clone().f_copy_(&src)?;
            loaded.insert(info.name.as_str().to_owned());
        }
    }
    let missing: Vec<&str> = model
        .named_parameters()
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !loaded.contains(*n))
        .collect();
    if !missing.is_empty() {
        let shown = missing
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ModelError::checkpoint(
            dir,
            format!(
                "{} parameter(s) missing from the checkpoint: {shown}",
                missing.len()
            ),
        ));
    }
    Ok(())
}

/// How to save a checkpoint.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// Start a new shard before one would exceed this many bytes (a tensor
    /// larger than this gets a shard of its own). transformers' unit: 1 GB =
    /// 10^9 bytes.
    pub max_shard_bytes: u64,
    /// Parameter dtype in the files (default: the model's).
    pub kind: Option<Kind>,
    /// Where to copy tokenizer files and generation_config.json from
    /// (default: the directory the model was loaded from).
    pub copy_files_from: Option<PathBuf>,
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self {
            max_shard_bytes: 5_000_000_000,
            kind: None,
            copy_files_from: None,
        }
    }
}

/// Saves `model` as an HF checkpoint in `dir`: config.json, the weights
/// (one file, or shards plus index), and the source's tokenizer files.
/// Every file is fsynced. Returns the weight files written.
pub fn save(model: &Qwen3, dir: &Path, opts: &SaveOptions) -> Result<Vec<PathBuf>> {
    let _guard = tch::no_grad_guard();
    let kind = opts.kind.unwrap_or_else(|| model.kind());
    let dtype = kind_dtype(kind)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    remove_stale_weights(dir)?;

    // Plan shards in module order, as transformers does.
    let elt = kind.elt_size_in_bytes() as u64;
    let mut shards: Vec<Vec<&(String, Tensor)>> = vec![Vec::new()];
    let mut shard_bytes = 0u64;
    let mut total = 0u64;
    for entry in model.named_parameters() {
        let bytes = entry.1.numel() as u64 * elt;
        if shard_bytes > 0 && shard_bytes + bytes > opts.max_shard_bytes {
            shards.push(Vec::new());
            shard_bytes = 0;
        }
        shard_bytes += bytes;
        total += bytes;
        if let Some(last) = shards.last_mut() {
            last.push(entry);
        }
    }
    let n = shards.len();
    let mut files = Vec::new();
    let mut weight_map = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let name = if n == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", i + 1)
        };
        let path = dir.join(&name);
        write_safetensors(&path, shard, kind, dtype)?;
        weight_map.extend(shard.iter().map(|(t, _)| (t.clone(), name.clone())));
        files.push(path);
    }
    if n > 1 {
        weight_map.sort();
        let map: Map<String, Value> = weight_map
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let index = json!({"metadata": {"total_size": total}, "weight_map": map});
        let mut text = serde_json::to_string_pretty(&index).map_err(|source| ModelError::Json {
            path: dir.join(INDEX_FILE),
            source,
        })?;
        text.push('\n');
        write_synced(&dir.join(INDEX_FILE), text.as_bytes())?;
    }
    let mut cfg = model.config().clone();
    cfg.set_kind(kind);
    cfg.save(dir)?;
    if let Some(src) = opts.copy_files_from.as_deref().or(model.source_dir()) {
        copy_side_files(src, dir)?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ModelError::io(dir, e))?;
    Ok(files)
}

/// Removes weight files a previous save left, so shards never mix.
fn remove_stale_weights(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| ModelError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stale =
            name == INDEX_FILE || name.starts_with("model") && name.ends_with(".safetensors");
        if stale {
            std::fs::remove_file(&path).map_err(|e| ModelError::io(&path, e))?;
        }
    }
    Ok(())
}

fn copy_side_files(src: &Path, dst: &Path) -> Result<()> {
    let same = src
        .canonicalize()
        .ok()
        .zip(dst.canonicalize().ok())
        .is_some_and(|(a, b)| a == b);
    if same {
        return Ok(());
    }
    for name in COPIED_FILES {
        let from = src.join(name);
        if from.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| ModelError::io(&from, e))?;
            write_synced(&dst.join(name), &bytes)?;
        }
    }
    Ok(())
}

/// Writes one safetensors file: header (with `format: pt` metadata, padded
/// with spaces to a multiple of 8 so data stays aligned), then the tensors'
/// little-endian bytes in header order.
fn write_safetensors(
    path: &Path,
    tensors: &[&(String, Tensor)],
    kind: Kind,
    dtype: &str,
) -> Result<()> {
    let elt = kind.elt_size_in_bytes() as u64;
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, t) in tensors {
        let bytes = t.numel() as u64 * elt;
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": t.size(), "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_vec(&header).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let io = |e| ModelError::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&text).map_err(io)?;
    let mut buf = Vec::new();
    for (_, t) in tensors {
        let t = t
            .f_detach()?
            .f_to_device(Device::Cpu)?
            .f_to_kind(kind)?
            .f_contiguous()?;
        buf.resize(t.numel() * kind.elt_size_in_bytes(), 0);
        t.f_copy_data_u8(&mut buf, t.numel())?;
        w.write_all(&buf).map_err(io)?;
    }
    let file = w
        .into_inner()
        .map_err(|e| ModelError::io(path, e.into_error()))?;
    file.sync_all().map_err(io)
}
