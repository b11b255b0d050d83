//! Record tables that episodes share copy-on-write.
//!
//! Every episode starts from a copy of the domain's database, and the
//! evaluator makes two more. Airline's database is 7 MB of JSON: copying it
//! whole three times per episode would dominate the run time. A [`Table`]
//! holds its records behind `Arc`s, so a copy costs a pointer per table, a
//! write copies only the record it changes, and comparing two databases that
//! share most records skips the shared ones.

use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value};

/// A table of records keyed by id (`dict[str, Model]` upstream).
#[derive(Clone, Debug, Default)]
pub struct Table(Arc<IndexMap<String, Arc<Value>>>);

impl Table {
    /// A table from a JSON object of records.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(Arc::new(
            map.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        ))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).map(Arc::as_ref)
    }

    pub fn get_key_value(&self, key: &str) -> Option<(&String, &Value)> {
        self.0.get_key_value(key).map(|(k, v)| (k, v.as_ref()))
    }

    /// A record to change; copies it (and the table's index) if shared.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        Arc::make_mut(&mut self.0).get_mut(key).map(Arc::make_mut)
    }

    /// Inserts or replaces a record (at the end, like a Python dict, when new).
    pub fn insert(&mut self, key: String, value: Value) {
        Arc::make_mut(&mut self.0).insert(key, Arc::new(value));
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.0.values().map(Arc::as_ref)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v.as_ref()))
    }

    /// The table as one JSON object (for dumps and hashes).
    pub fn to_value(&self) -> Value {
        Value::Object(self.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

impl PartialEq for Table {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        self.0.len() == other.0.len()
            && self.0.iter().all(|(k, v)| {
                other
                    .0
                    .get(k)
                    .is_some_and(|w| Arc::ptr_eq(v, w) || v.as_ref() == w.as_ref())
            })
    }
}

/// Key lookup shared by [`Table`] and plain JSON objects (nested dicts).
pub trait Records {
    fn entry(&self, key: &str) -> Option<(&String, &Value)>;
}

impl Records for Table {
    fn entry(&self, key: &str) -> Option<(&String, &Value)> {
        self.get_key_value(key)
    }
}

impl Records for Map<String, Value> {
    fn entry(&self, key: &str) -> Option<(&String, &Value)> {
        self.get_key_value(key)
    }
}

/// A database made of record tables only (airline, retail): each top-level
/// field is a `dict[str, Model]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableDb {
    tables: IndexMap<String, Table>,
}

impl TableDb {
    /// Splits a validated database into tables; `None` if a top-level field is not an object.
    pub fn from_value(value: Value) -> Option<Self> {
        let Value::Object(fields) = value else {
            return None;
        };
        let mut tables = IndexMap::new();
        for (name, field) in fields {
            let Value::Object(records) = field else {
                return None;
            };
            tables.insert(name, Table::from_map(records));
        }
        Some(Self { tables })
    }

    /// The database as one JSON value (`model_dump()`), for dumps and hashes.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.tables
                .iter()
                .map(|(k, t)| (k.clone(), t.to_value()))
                .collect(),
        )
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    pub fn table_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.tables.get_mut(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Table {
        match json!({"a": {"n": 1}, "b": {"n": 2}}) {
            Value::Object(m) => Table::from_map(m),
            _ => Table::default(),
        }
    }

    #[test]
    fn copies_share_records_until_one_is_written() {
        let original = table();
        let mut copy = original.clone();
        assert_eq!(copy, original);
        if let Some(rec) = copy.get_mut("b") {
            rec["n"] = json!(3);
        }
        assert_eq!(
            original.get("b"),
            Some(&json!({"n": 2})),
            "the original is untouched"
        );
        assert_eq!(copy.get("b"), Some(&json!({"n": 3})));
        assert_ne!(copy, original);
        copy.insert("c".into(), json!({}));
        assert_eq!(copy.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(
            copy.to_value(),
            json!({"a": {"n": 1}, "b": {"n": 3}, "c": {}})
        );
        // Equal content compares equal even when not shared.
        let mut again = original.clone();
        if let Some(rec) = again.get_mut("b") {
            rec["n"] = json!(2);
        }
        assert_eq!(again, original);
    }
}
