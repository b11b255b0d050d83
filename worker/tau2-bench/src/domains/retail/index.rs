//! Lookups built once per database and shared by every episode cloned from
//! it: the official tools scan all 500 users per search and dump products
//! afresh each time. No tool changes products, names or emails (only
//! `update_db` can, and it rebuilds the index), so the index stays valid.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::pyargs::lowercase;
use crate::py;

#[derive(Debug, Default)]
pub struct Index {
    /// Lower-cased email -> the first user (in database order) with it.
    by_email: HashMap<String, String>,
    /// Lower-cased (first, last) name -> users in database order.
    by_name: HashMap<(String, String), Vec<String>>,
    /// Lower-cased first names of all users.
    first_names: HashSet<String>,
    /// Product id -> the product as `get_product_details` returns it.
    products: HashMap<String, String>,
    /// `list_all_product_types`'s result.
    product_types: String,
}

impl Index {
    pub fn build(db: &Value) -> Self {
        let mut index = Self::default();
        let table = |name: &str| db.get(name).and_then(Value::as_object);
        for (id, user) in table("users").into_iter().flatten() {
            index.add_user(id, user);
        }
        let mut types = Map::new();
        for (id, product) in table("products").into_iter().flatten() {
            index.products.insert(id.clone(), py::json::dumps(product));
            if let Some(name) = product["name"].as_str() {
                // A later product with the same name wins, as in the dict
                // comprehension upstream.
                types.insert(name.to_string(), product["product_id"].clone());
            }
        }
        index.product_types = py::json::dumps_sorted(&Value::Object(types));
        index
    }

    fn add_user(&mut self, id: &str, user: &Value) {
        let text = |v: &Value| lowercase(v.as_str().unwrap_or_default()).into_owned();
        self.by_email
            .entry(text(&user["email"]))
            .or_insert_with(|| id.to_string());
        let first = text(&user["name"]["first_name"]);
        let last = text(&user["name"]["last_name"]);
        self.first_names.insert(first.clone());
        self.by_name
            .entry((first, last))
            .or_default()
            .push(id.to_string());
    }

    pub fn user_by_email(&self, lowered: &str) -> Option<&str> {
        self.by_email.get(lowered).map(String::as_str)
    }

    pub fn has_first_name(&self, lowered: &str) -> bool {
        self.first_names.contains(lowered)
    }

    /// Users with this lower-cased name, in database order.
    pub fn users_named(&self, first: &str, last: &str) -> &[String] {
        self.by_name
            .get(&(first.to_string(), last.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    pub fn product_json(&self, id: &str) -> Option<&str> {
        self.products.get(id).map(String::as_str)
    }

    pub fn product_types(&self) -> &str {
        &self.product_types
    }
}
