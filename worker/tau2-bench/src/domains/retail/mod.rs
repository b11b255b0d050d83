//! The retail domain (`domains/retail/` at the recipe commit): an online
//! store's products, users and orders, and the 15 tools the agent uses on
//! them. Tools work on the validated database as JSON, like the official
//! pydantic models that do not validate on assignment, and fail with the
//! official exception texts.

mod index;
mod model;
mod orders;
mod pyargs;
mod tools;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tau2_api::bench::Domain;

use super::{agent_only_tool, load_db, update_table_db};
use crate::data::{DataDir, DataError, read_text};
use crate::db::{Table, TableDb};
use crate::env::{DomainState, PyErr, PyResult};
use crate::py;
use crate::py::pydantic::Validator;
use crate::task::Requestor;
use crate::tool::{ToolResult, ToolSpec};
use index::Index;
use model::RetailDb;
use pyargs::dict_key;

pub(super) fn load(data: &DataDir) -> Result<(String, Box<dyn DomainState>), DataError> {
    let path = data.domain_file(Domain::Retail, "db.json")?;
    let value = load_db::<RetailDb>(&path)?;
    let index = Arc::new(Index::build(&value));
    let db = TableDb::from_value(value).ok_or_else(|| DataError::Invalid {
        path,
        message: "every top-level field must be a table of records".into(),
    })?;
    let policy = read_text(&data.domain_file(Domain::Retail, "policy.md")?)?;
    Ok((policy, Box::new(Retail { db, index })))
}

/// One episode's retail database, and the lookups shared with its template.
#[derive(Clone)]
struct Retail {
    /// Shared with the loaded template until written (see `crate::db`).
    db: TableDb,
    index: Arc<Index>,
}

const QUAL: &str = "RetailTools";

/// The fields of `UserAddress`, in declaration order (its errors and dumps
/// follow it, not the tools' parameter order).
const ADDRESS_FIELDS: [&str; 6] = ["address1", "address2", "city", "country", "state", "zip"];

impl DomainState for Retail {
    fn agent_tools(&self) -> &'static [ToolSpec] {
        tools::TOOLS
    }

    fn call(
        &mut self,
        side: Requestor,
        name: &str,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        agent_only_tool(side, tools::TOOLS, QUAL, name, args)?;
        let arg = |key: &str| args.get(key).unwrap_or(&Value::Null);
        match name {
            "calculate" => py::calc::calculate(arg("expression")).map(ToolResult::Text),
            "cancel_pending_order" => self.cancel_pending_order(arg("order_id"), arg("reason")),
            "exchange_delivered_order_items" => self.exchange_delivered_order_items(
                arg("order_id"),
                arg("item_ids"),
                arg("new_item_ids"),
                arg("payment_method_id"),
            ),
            "find_user_id_by_name_zip" => {
                self.find_user_id_by_name_zip(arg("first_name"), arg("last_name"), arg("zip"))
            }
            "find_user_id_by_email" => self.find_user_id_by_email(arg("email")),
            "get_order_details" => self.get_order_details(arg("order_id")),
            "get_product_details" => self.get_product_details(arg("product_id")),
            "get_user_details" => self.get_user_details(arg("user_id")),
            "list_all_product_types" => self.list_all_product_types(),
            "modify_pending_order_address" => {
                self.modify_pending_order_address(arg("order_id"), args)
            }
            "modify_pending_order_items" => self.modify_pending_order_items(
                arg("order_id"),
                arg("item_ids"),
                arg("new_item_ids"),
                arg("payment_method_id"),
            ),
            "modify_pending_order_payment" => {
                self.modify_pending_order_payment(arg("order_id"), arg("payment_method_id"))
            }
            "modify_user_address" => self.modify_user_address(arg("user_id"), args),
            "return_delivered_order_items" => self.return_delivered_order_items(
                arg("order_id"),
                arg("item_ids"),
                arg("payment_method_id"),
            ),
            "transfer_to_human_agents" => Ok(ToolResult::Text("Transfer successful".into())),
            _ => Err(PyErr::attribute(format!(
                "'{QUAL}' object has no attribute '{name}'"
            ))),
        }
    }

    fn db(&self, side: Requestor) -> Option<Cow<'_, Value>> {
        (side == Requestor::Assistant).then(|| Cow::Owned(self.db.to_value()))
    }

    fn same_db(&self, other: &dyn DomainState) -> bool {
        other
            .as_any()
            .downcast_ref::<Self>()
            .is_some_and(|o| o.db == self.db)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn update_db(&mut self, side: Requestor, data: &Map<String, Value>) -> PyResult<()> {
        match side {
            Requestor::Assistant => {
                let value = update_table_db::<RetailDb>(&mut self.db, data)?;
                self.index = Arc::new(Index::build(&value));
                Ok(())
            }
            Requestor::User => Err(PyErr::attribute(
                "'NoneType' object has no attribute 'update_db'",
            )),
        }
    }

    fn clone_state(&self) -> Box<dyn DomainState> {
        Box::new(self.clone())
    }
}

/// Lookups (`_get_order`, `_get_user`, ...) and the read tools.
impl Retail {
    fn table(&self, name: &str) -> PyResult<&Table> {
        self.db.table(name).ok_or_else(|| broken(name))
    }

    fn table_mut(&mut self, name: &str) -> PyResult<&mut Table> {
        self.db.table_mut(name).ok_or_else(|| broken(name))
    }

    /// The key of a record that `id in table` finds, or `<what> not found`.
    fn key<'v>(&self, table: &str, id: &'v Value, what: &str) -> PyResult<&'v str> {
        match dict_key(id)? {
            Some(key) if self.table(table)?.contains_key(key) => Ok(key),
            _ => Err(PyErr::value(format!("{what} not found"))),
        }
    }

    fn record(&self, table: &str, id: &Value, what: &str) -> PyResult<&Value> {
        let key = self.key(table, id, what)?;
        self.table(table)?
            .get(key)
            .ok_or_else(|| PyErr::value(format!("{what} not found")))
    }

    fn record_mut(&mut self, table: &str, key: &str) -> PyResult<&mut Value> {
        self.table_mut(table)?
            .get_mut(key)
            .ok_or_else(|| PyErr::value("record vanished"))
    }

    fn order(&self, order_id: &Value) -> PyResult<&Value> {
        self.record("orders", order_id, "Order")
    }

    fn user(&self, user_id: &Value) -> PyResult<&Value> {
        self.record("users", user_id, "User")
    }

    /// `_get_variant`: the product must exist, then the variant.
    fn variant(&self, product_id: &Value, variant_id: &Value) -> PyResult<&Value> {
        let product = self.record("products", product_id, "Product")?;
        let missing = || PyErr::value("Variant not found");
        let key = dict_key(variant_id)?.ok_or_else(missing)?;
        product["variants"].get(key).ok_or_else(missing)
    }

    /// `_get_payment_method`: the user must exist, then the method.
    fn payment_method(&self, user_id: &Value, method_id: &Value) -> PyResult<&Value> {
        let user = self.user(user_id)?;
        let missing = || PyErr::value("Payment method not found");
        let key = dict_key(method_id)?.ok_or_else(missing)?;
        user["payment_methods"].get(key).ok_or_else(missing)
    }

    fn get_order_details(&self, order_id: &Value) -> PyResult<ToolResult> {
        Ok(model(self.order(order_id)?))
    }

    fn get_user_details(&self, user_id: &Value) -> PyResult<ToolResult> {
        Ok(model(self.user(user_id)?))
    }

    /// Products never change, so their JSON is made once (see [`Index`]).
    fn get_product_details(&self, product_id: &Value) -> PyResult<ToolResult> {
        let key = self.key("products", product_id, "Product")?;
        match self.index.product_json(key) {
            Some(json) => Ok(ToolResult::Text(json.to_string())),
            None => Ok(model(self.record("products", product_id, "Product")?)),
        }
    }

    fn list_all_product_types(&self) -> PyResult<ToolResult> {
        Ok(ToolResult::Text(self.index.product_types().to_string()))
    }

    /// The first user whose email matches case-insensitively. Upstream calls
    /// the argument's `.lower()` once per user, so a non-string fails unless
    /// there are no users.
    fn find_user_id_by_email(&self, email: &Value) -> PyResult<ToolResult> {
        let not_found = || PyErr::value("User not found");
        if self.table("users")?.is_empty() {
            return Err(not_found());
        }
        let wanted = pyargs::lower(email)?;
        self.index
            .user_by_email(&wanted)
            .map(|id| ToolResult::Text(id.to_string()))
            .ok_or_else(not_found)
    }

    /// Names match case-insensitively, the zip exactly. Python's `and`
    /// evaluates `last_name.lower()` only once some user's first name matched.
    fn find_user_id_by_name_zip(
        &self,
        first_name: &Value,
        last_name: &Value,
        zip: &Value,
    ) -> PyResult<ToolResult> {
        let not_found = || PyErr::value("User not found");
        let users = self.table("users")?;
        if users.is_empty() {
            return Err(not_found());
        }
        let first = pyargs::lower(first_name)?;
        if !self.index.has_first_name(&first) {
            return Err(not_found());
        }
        let last = pyargs::lower(last_name)?;
        self.index
            .users_named(&first, &last)
            .iter()
            .find(|id| {
                users
                    .get(id)
                    .is_some_and(|u| py::eq(&u["address"]["zip"], zip))
            })
            .map(|id| ToolResult::Text(id.clone()))
            .ok_or_else(not_found)
    }

    /// `UserAddress(...)` from the tool's arguments: pydantic checks every field.
    fn address_from(args: &Map<String, Value>) -> PyResult<Value> {
        let mut check = Validator::new();
        let mut address = Map::new();
        for field in ADDRESS_FIELDS {
            let v = args.get(field).unwrap_or(&Value::Null);
            check.str(field, v);
            address.insert(field.into(), v.clone());
        }
        check
            .finish("UserAddress")
            .map_err(|e| PyErr::new("ValidationError", e.to_string()))?;
        Ok(Value::Object(address))
    }

    fn modify_user_address(
        &mut self,
        user_id: &Value,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        let key = self.key("users", user_id, "User")?;
        let address = Self::address_from(args)?;
        let user = self.record_mut("users", key)?;
        user["address"] = address;
        Ok(model(user))
    }
}

/// A model result, serialized in place as `to_json_str` does for
/// `ToolResult::Model` (without cloning the record first).
fn model(record: &Value) -> ToolResult {
    ToolResult::Text(py::json::dumps(record))
}

fn broken(what: &str) -> PyErr {
    PyErr::new("RuntimeError", format!("retail database has no {what}"))
}

/// Whether a payment method is a `GiftCard`.
fn is_gift_card(method: &Value) -> bool {
    method["source"] == "gift_card"
}

/// An `OrderPayment` (pydantic makes the amount a float).
fn order_payment(kind: &str, amount: f64, method_id: &Value) -> Value {
    json!({"transaction_type": kind, "amount": amount, "payment_method_id": method_id})
}
