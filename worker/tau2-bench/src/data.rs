//! Loading tau2-bench's data files: databases, tasks, splits, policies and
//! the user-simulator guidelines.
//!
//! A data directory is either in the layout of this repository's
//! `shared/tau2` (`data/<domain>/…`, `user_simulator/…`, plus the files that
//! differ at the recipe's commit in `recipe-337326e/`), or tau2-bench's own
//! `data/tau2` layout (`domains/<domain>/…`, `user_simulator/…`). With
//! [`DataVersion::Recipe337326e`] the recipe's files replace the newest ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tau2_api::bench::{DataVersion, Domain, Split};

use crate::task::Task;

/// A problem with the data, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid {format}: {message}")]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "no tau2-bench data for domain {domain} under {dir} (expected {dir}/data/{domain}, {dir}/domains/{domain} or {dir}/{domain})"
    )]
    NoDomain { dir: PathBuf, domain: Domain },
}

/// Where a tau2-bench data set lives.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
    version: DataVersion,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>, version: DataVersion) -> Self {
        Self {
            root: root.into(),
            version,
        }
    }

    pub fn version(&self) -> DataVersion {
        self.version
    }

    /// The directory holding one domain's files.
    pub fn domain_dir(&self, domain: Domain) -> Result<PathBuf, DataError> {
        let name = domain.as_str();
        [
            self.root.join("data").join(name),
            self.root.join("domains").join(name),
            self.root.join(name),
        ]
        .into_iter()
        .find(|d| d.join("split_tasks.json").is_file() || d.join("tasks.json").is_file())
        .ok_or_else(|| DataError::NoDomain {
            dir: self.root.clone(),
            domain,
        })
    }

    /// A domain file, from the recipe overlay when it has one.
    pub fn domain_file(&self, domain: Domain, file: &str) -> Result<PathBuf, DataError> {
        if self.version == DataVersion::Recipe337326e {
            let overlay = self
                .root
                .join("recipe-337326e")
                .join(domain.as_str())
                .join(file);
            if overlay.is_file() {
                return Ok(overlay);
            }
        }
        Ok(self.domain_dir(domain)?.join(file))
    }

    /// A user-simulator guidelines file (`simulation_guidelines*.md`).
    pub fn user_simulator_file(&self, file: &str) -> PathBuf {
        if self.version == DataVersion::Recipe337326e {
            let overlay = self.root.join("recipe-337326e/user_simulator").join(file);
            if overlay.is_file() {
                return overlay;
            }
        }
        self.root.join("user_simulator").join(file)
    }

    pub fn read_text(&self, path: &Path) -> Result<String, DataError> {
        read_text(path)
    }
}

pub fn read_text(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|source| DataError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses a JSON or TOML file into a JSON value.
pub fn read_value(path: &Path) -> Result<Value, DataError> {
    let text = read_text(path)?;
    let parse_err = |format, message: String| DataError::Parse {
        path: path.to_owned(),
        format,
        message,
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| parse_err("TOML", e.to_string()))?;
            serde_json::to_value(table).map_err(|e| parse_err("TOML", e.to_string()))
        }
        _ => serde_json::from_str(&text).map_err(|e| parse_err("JSON", e.to_string())),
    }
}

/// A domain's tasks and splits.
#[derive(Clone, Debug)]
pub struct TaskSet {
    pub domain: Domain,
    /// All tasks of `tasks.json`, in file order.
    pub tasks: Vec<Task>,
    /// Split name -> task ids, from `split_tasks.json`.
    pub splits: HashMap<String, Vec<String>>,
}

impl TaskSet {
    pub fn load(data: &DataDir, domain: Domain) -> Result<Self, DataError> {
        let tasks_path = data.domain_file(domain, "tasks.json")?;
        let text = read_text(&tasks_path)?;
        let tasks: Vec<Task> = serde_json::from_str(&text).map_err(|e| DataError::Parse {
            path: tasks_path.clone(),
            format: "task list",
            message: e.to_string(),
        })?;
        let split_path = data.domain_file(domain, "split_tasks.json")?;
        let splits: HashMap<String, Vec<String>> = serde_json::from_str(&read_text(&split_path)?)
            .map_err(|e| DataError::Parse {
            path: split_path.clone(),
            format: "split file",
            message: e.to_string(),
        })?;
        let known: std::collections::HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        for (split, ids) in &splits {
            if let Some(missing) = ids.iter().find(|id| !known.contains(id.as_str())) {
                return Err(DataError::Invalid {
                    path: split_path,
                    message: format!(
                        "split {split:?} names task {missing:?}, which {} does not have",
                        tasks_path.display()
                    ),
                });
            }
        }
        Ok(Self {
            domain,
            tasks,
            splits,
        })
    }

    /// The tasks of a split, in `tasks.json` order.
    pub fn split(&self, split: Split) -> Result<Vec<&Task>, String> {
        let ids = self.splits.get(split.as_str()).ok_or_else(|| {
            let mut names: Vec<&String> = self.splits.keys().collect();
            names.sort();
            format!(
                "domain {} has no split {split}; it has {names:?}",
                self.domain
            )
        })?;
        let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        Ok(self
            .tasks
            .iter()
            .filter(|t| ids.contains(t.id.as_str()))
            .collect())
    }

    pub fn get(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }
}
