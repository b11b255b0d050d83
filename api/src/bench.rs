//! Names from tau2-bench's data: its domains and task splits.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A tau2-bench domain.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// A tiny task-management domain (10 tasks, only a `base` split) for smoke tests.
    Mock,
    /// Airline reservations (50 tasks).
    Airline,
    /// Retail orders (114 tasks).
    Retail,
    /// Telecom tech support with dual control: the user operates the device (114 tasks).
    Telecom,
}

impl Domain {
    pub const ALL: [Domain; 4] = [
        Domain::Mock,
        Domain::Airline,
        Domain::Retail,
        Domain::Telecom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Mock => "mock",
            Domain::Airline => "airline",
            Domain::Retail => "retail",
            Domain::Telecom => "telecom",
        }
    }

    /// The splits this domain's `split_tasks.json` defines.
    pub fn splits(self) -> &'static [Split] {
        match self {
            Domain::Mock => &[Split::Base],
            Domain::Airline | Domain::Retail => &[Split::Train, Split::Test, Split::Base],
            Domain::Telecom => &[
                Split::Train,
                Split::Test,
                Split::Base,
                Split::Small,
                Split::Full,
            ],
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named task split from a domain's `split_tasks.json`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training tasks (airline 30, retail 74, telecom 74).
    Train,
    /// The held-out test tasks the model card reports on (airline 20, retail 40, telecom 40).
    Test,
    /// Every task of the domain.
    Base,
    /// Telecom only: 20 tasks.
    Small,
    /// Telecom only: 2285 generated tasks.
    Full,
}

/// Which tau2-bench version's data and semantics to use.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DataVersion {
    /// tau2-bench at commit 337326e, the one the model card's recipe used.
    #[default]
    Recipe337326e,
    /// The newest tau2-bench data the worker ships.
    Latest,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Base => "base",
            Split::Small => "small",
            Split::Full => "full",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split names we accept must be exactly those in the shipped data.
    #[test]
    fn splits_match_the_data_files() -> Result<(), Box<dyn std::error::Error>> {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tau2");
        for domain in Domain::ALL {
            for dir in ["data", "recipe-337326e"] {
                let path = data
                    .join(dir)
                    .join(domain.as_str())
                    .join("split_tasks.json");
                if dir != "data" && !path.exists() {
                    continue;
                }
                let splits: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&std::fs::read_to_string(&path)?)?;
                let mut in_file: Vec<&str> = splits.keys().map(String::as_str).collect();
                let mut ours: Vec<&str> = domain.splits().iter().map(|s| s.as_str()).collect();
                in_file.sort_unstable();
                ours.sort_unstable();
                assert_eq!(in_file, ours, "{}", path.display());
            }
        }
        Ok(())
    }
}
