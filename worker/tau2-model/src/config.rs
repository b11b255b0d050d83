//! `config.json` of a Qwen3 checkpoint (the fields transformers'
//! `Qwen3Config` uses). Fields we do not model are kept in `extra` so that a
//! load -> save round trip does not lose them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tch::Kind;

use crate::error::{ModelError, Result};

/// A token id, or several (`eos_token_id` is a list in some configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(i64),
    Many(Vec<i64>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// Qwen3 hyper-parameters. Defaults are transformers' `Qwen3Config` defaults,
/// so a config.json that omits a field means the same thing here and there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen3Config {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    /// Defaults to `num_attention_heads` (no grouping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<i64>,
    /// Explicit in Qwen3 (128 for the 4B model, not hidden / heads).
    #[serde(default = "default_head_dim")]
    pub head_dim: i64,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// transformers < 5 writes `rope_theta` at the top level; 5.x writes
    /// `rope_parameters.rope_theta` (kept in `extra`). See [`Self::rope_theta`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    pub vocab_size: i64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: i64,
    /// `torch_dtype` (transformers < 5) or `dtype` (5.x); whichever was read
    /// is written back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_head_dim() -> i64 {
    128
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_max_position_embeddings() -> i64 {
    32768
}

impl Qwen3Config {
    /// Reads `config.json` from a checkpoint directory (or the file itself).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| ModelError::io(&file, e))?;
        Self::parse(&text, &file)
    }

    /// Parses config.json text; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: file.to_path_buf(),
            source,
        })?;
        cfg.validate().map_err(|message| ModelError::Config {
            path: file.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    /// Checks that the sizes are consistent and that the config asks for
    /// nothing this implementation does not do (it would silently differ).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_kv_heads()),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, value) in positive {
            if value <= 0 {
                return Err(format!("{name} must be positive, got {value}"));
            }
        }
        if self.num_attention_heads % self.num_kv_heads() != 0 {
            return Err(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(format!(
                "head_dim must be even for RoPE, got {}",
                self.head_dim
            ));
        }
        if self.rms_norm_eps.is_nan()
            || self.rms_norm_eps <= 0.0
            || self.rope_theta().is_nan()
            || self.rope_theta() <= 0.0
        {
            return Err("rms_norm_eps and rope_theta must be positive".into());
        }
        let unsupported = |key: &str, ok: fn(&Value) -> bool| match self.extra.get(key) {
            Some(v) if !ok(v) => Err(format!("{key} = {v} is not supported")),
            _ => Ok(()),
        };
        unsupported("model_type", |v| v == "qwen3")?;
        unsupported("hidden_act", |v| v == "silu")?;
        unsupported("attention_bias", |v| v == &Value::Bool(false))?;
        unsupported("use_sliding_window", |v| v == &Value::Bool(false))?;
        unsupported("rope_scaling", Value::is_null)?;
        unsupported("rope_parameters", |v| {
            matches!(v.get("rope_type"), None | Some(Value::Null))
                || v.get("rope_type").is_some_and(|t| t == "default")
        })?;
        if let Some(name) = self.dtype_name()
            && kind_from_name(name).is_none()
        {
            return Err(format!("unsupported dtype {name:?}"));
        }
        Ok(())
    }

    pub fn num_kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// RoPE base: top-level `rope_theta`, else `rope_parameters.rope_theta`,
    /// else transformers' default 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| {
                self.extra
                    .get("rope_parameters")?
                    .get("rope_theta")?
                    .as_f64()
            })
            .unwrap_or(10_000.0)
    }

    /// The checkpoint's dtype name (`torch_dtype` or `dtype`).
    pub fn dtype_name(&self) -> Option<&str> {
        self.torch_dtype.as_deref().or(self.dtype.as_deref())
    }

    /// The checkpoint's dtype as a tch kind (f32 when unspecified).
    pub fn kind(&self) -> Kind {
        self.dtype_name()
            .and_then(kind_from_name)
            .unwrap_or(Kind::Float)
    }

    /// Records the dtype of saved weights under whichever key the config uses.
    pub fn set_kind(&mut self, kind: Kind) {
        let name = kind_name(kind).to_string();
        if self.dtype.is_some() && self.torch_dtype.is_none() {
            self.dtype = Some(name);
        } else {
            self.torch_dtype = Some(name);
        }
    }

    pub fn eos_token_ids(&self) -> Vec<i64> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// Writes `<dir>/config.json` (pretty, like transformers) and fsyncs it.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("config.json");
        let mut text = serde_json::to_string_pretty(self).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
        text.push('\n');
        crate::checkpoint::write_synced(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// transformers' dtype names.
pub fn kind_from_name(name: &str) -> Option<Kind> {
    match name {
        "float32" | "float" => Some(Kind::Float),
        "bfloat16" => Some(Kind::BFloat16),
        "float16" | "half" => Some(Kind::Half),
        _ => None,
    }
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3_4B: &str = r#"{
      "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
      "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
      "hidden_size": 2560, "initializer_range": 0.02, "intermediate_size": 9728,
      "max_position_embeddings": 262144, "max_window_layers": 36, "model_type": "qwen3",
      "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
      "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 5000000,
      "sliding_window": null, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
      "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false,
      "vocab_size": 151936
    }"#;

    #[test]
    fn parses_the_4b_config_and_keeps_unknown_fields() {
        let cfg = Qwen3Config::parse(QWEN3_4B, Path::new("config.json")).expect("parses");
        assert_eq!(
            (cfg.hidden_size, cfg.head_dim, cfg.num_kv_heads()),
            (2560, 128, 8)
        );
        assert_eq!(cfg.rope_theta(), 5e6);
        assert!(cfg.tie_word_embeddings);
        assert_eq!(cfg.kind(), Kind::BFloat16);
        assert_eq!(cfg.eos_token_ids(), vec![151645]);
        let saved: Value = serde_json::to_value(&cfg).expect("serialises");
        let orig: Value = serde_json::from_str(QWEN3_4B).expect("json");
        // Every original key comes back with the same value (numbers compared as f64).
        for (k, v) in orig.as_object().expect("object") {
            let s = &saved[k];
            assert!(
                s == v || s.as_f64() == v.as_f64() && v.is_number(),
                "{k}: {v} vs {s}"
            );
        }
    }

    #[test]
    fn reads_transformers_5_rope_parameters_and_dtype() {
        let text = r#"{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 10, "dtype": "float32",
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}"#;
        let mut cfg = Qwen3Config::parse(text, Path::new("x.json")).expect("parses");
        assert_eq!(cfg.rope_theta(), 1e6);
        assert_eq!(cfg.num_kv_heads(), 2);
        cfg.set_kind(Kind::BFloat16);
        let saved = serde_json::to_value(&cfg).expect("serialises");
        assert_eq!(saved["dtype"], "bfloat16");
        assert!(saved.get("torch_dtype").is_none());
    }

    #[test]
    fn malformed_configs_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.json");
        let cases = [
            ("{not json", "invalid JSON"),
            (r#"{"hidden_size": 8}"#, "missing field"),
            (
                r#"{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                 "num_attention_heads": 3, "num_key_value_heads": 2, "vocab_size": 10}"#,
                "multiple of num_key_value_heads",
            ),
            (
                r#"{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "vocab_size": 10, "rope_scaling": {"type": "yarn"}}"#,
                "rope_scaling",
            ),
            (
                r#"{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "vocab_size": 10, "torch_dtype": "int8"}"#,
                "unsupported dtype",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&file, text).expect("write");
            let err = Qwen3Config::load(dir.path()).expect_err(text).to_string();
            assert!(err.contains("config.json") && err.contains(want), "{err}");
        }
        let err = Qwen3Config::load(dir.path().join("missing")).expect_err("missing");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
