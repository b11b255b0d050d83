//! The tools that change orders. Each follows the official method step by
//! step, because several of them change the database and then raise (the
//! change stays), and because the order of the checks decides the error.

use serde_json::{Value, json};

use super::pyargs::{self, Iterable, count_eq};
use super::{Retail, is_gift_card, model, order_payment};
use crate::env::{PyErr, PyResult};
use crate::py;
use crate::py::calc::round2;
use crate::tool::ToolResult;

const CANCEL_REASONS: [&str; 2] = ["no longer needed", "ordered by mistake"];

/// A price difference: Python starts the sum at the int `0`, so with no
/// items it stays an int (and is stored as `0`, not `0.0`).
#[derive(Clone, Copy)]
struct PriceDiff(Option<f64>);

impl PriceDiff {
    fn add(&mut self, delta: f64) {
        self.0 = Some(self.0.unwrap_or(0.0) + delta);
    }

    fn value(self) -> f64 {
        self.0.unwrap_or(0.0)
    }

    /// `round(diff, 2)`: an int stays an int.
    fn rounded(self) -> Self {
        Self(self.0.map(round2))
    }

    fn to_json(self) -> Value {
        self.0.map_or(json!(0), |f| json!(f))
    }
}

/// The checked pairs of an item exchange or modification.
struct Priced {
    /// `zip(item_ids, new_item_ids)`.
    pairs: Vec<(Value, Value)>,
    diff: PriceDiff,
    /// The last new variant checked (its price and options leak, see below).
    last_variant: Option<Value>,
}

fn number(v: &Value) -> f64 {
    py::as_number(v).map_or(f64::NAN, py::Num::as_f64)
}

impl Retail {
    fn order_mut(&mut self, key: &str) -> PyResult<&mut Value> {
        self.record_mut("orders", key)
    }

    /// `_get_payment_method`, then for a gift card
    /// `balance = round(balance + delta, 2)`.
    fn adjust_gift_card(&mut self, user_id: &Value, method_id: &Value, delta: f64) -> PyResult<()> {
        if !is_gift_card(self.payment_method(user_id, method_id)?) {
            return Ok(());
        }
        let (user, method) = (
            user_id.as_str().unwrap_or_default(),
            method_id.as_str().unwrap_or_default(),
        );
        let user = self.record_mut("users", user)?;
        if let Some(card) = user["payment_methods"].get_mut(method) {
            card["balance"] = json!(round2(number(&card["balance"]) + delta));
        }
        Ok(())
    }

    /// Whether a gift card cannot cover `amount` (`balance < amount`).
    fn gift_card_short(method: &Value, amount: f64) -> bool {
        is_gift_card(method) && number(&method["balance"]) < amount
    }

    /// The multiset check shared by the item tools: each requested id may
    /// appear at most as often as in the order (`error` names the first that
    /// does not).
    fn check_items(order: &Value, item_ids: &Value, error: fn(&Value) -> String) -> PyResult<()> {
        let ordered: Vec<Value> = order_items(order)
            .iter()
            .map(|i| i["item_id"].clone())
            .collect();
        let requested = Iterable::new(item_ids)?;
        for id in requested.items() {
            if requested.count(&id)? > count_eq(&ordered, &id) {
                return Err(PyErr::value(error(&id)));
            }
        }
        Ok(())
    }

    /// The old and new item pairs of an exchange or modification, with the
    /// price difference and the last new variant checked. Both lists must
    /// have the same `len`; each old item must be in the order and each new
    /// one an available variant of the same product.
    fn price_new_items(
        &self,
        order: &Value,
        item_ids: &Value,
        new_item_ids: &Value,
        length_error: &str,
        reject_same: bool,
    ) -> PyResult<Priced> {
        if pyargs::len(item_ids)? != pyargs::len(new_item_ids)? {
            return Err(PyErr::value(length_error));
        }
        let pairs: Vec<(Value, Value)> = Iterable::new(item_ids)?
            .items()
            .into_iter()
            .zip(Iterable::new(new_item_ids)?.items())
            .collect();
        let mut diff = PriceDiff(None);
        let mut last_variant = None;
        for (item_id, new_item_id) in &pairs {
            if reject_same && py::eq(item_id, new_item_id) {
                return Err(PyErr::value(
                    "The new item id should be different from the old item id",
                ));
            }
            let item = order_items(order)
                .iter()
                .find(|i| py::eq(&i["item_id"], item_id))
                .ok_or_else(|| PyErr::value(format!("Item {} not found", py::str(item_id))))?;
            let variant = self.variant(&item["product_id"], new_item_id)?;
            if variant["available"] != true {
                return Err(PyErr::value(format!(
                    "New item {} not found or available",
                    py::str(new_item_id)
                )));
            }
            diff.add(number(&variant["price"]) - number(&item["price"]));
            last_variant = Some(variant.clone());
        }
        Ok(Priced {
            pairs,
            diff,
            last_variant,
        })
    }

    pub(super) fn cancel_pending_order(
        &mut self,
        order_id: &Value,
        reason: &Value,
    ) -> PyResult<ToolResult> {
        let key = self.key("orders", order_id, "Order")?;
        let order = self.order(order_id)?;
        if order["status"] != "pending" {
            return Err(PyErr::value("Non-pending order cannot be cancelled"));
        }
        let valid = pyargs::dict_key(reason)?.is_some_and(|r| CANCEL_REASONS.contains(&r));
        if !valid {
            return Err(PyErr::value("Invalid reason"));
        }
        let user_id = order["user_id"].clone();
        let payments = order_items_of(order, "payment_history");
        let mut refunds = Vec::with_capacity(payments.len());
        for payment in &payments {
            let method_id = &payment["payment_method_id"];
            let amount = number(&payment["amount"]);
            refunds.push(order_payment("refund", amount, method_id));
            // Gift cards are refunded at once, one payment at a time.
            self.adjust_gift_card(&user_id, method_id, amount)?;
        }
        let order = self.order_mut(key)?;
        order["status"] = json!("cancelled");
        order["cancel_reason"] = reason.clone();
        if let Some(history) = order["payment_history"].as_array_mut() {
            history.extend(refunds);
        }
        Ok(model(order))
    }

    pub(super) fn exchange_delivered_order_items(
        &mut self,
        order_id: &Value,
        item_ids: &Value,
        new_item_ids: &Value,
        method_id: &Value,
    ) -> PyResult<ToolResult> {
        let key = self.key("orders", order_id, "Order")?;
        let order = self.order(order_id)?;
        if order["status"] != "delivered" {
            return Err(PyErr::value("Non-delivered order cannot be exchanged"));
        }
        Self::check_items(order, item_ids, |id| {
            format!("Number of {} not found.", py::str(id))
        })?;
        let priced = self.price_new_items(
            order,
            item_ids,
            new_item_ids,
            "The number of items to be exchanged should match.",
            false,
        )?;
        let diff = priced.diff.rounded();
        let method = self.payment_method(&order["user_id"], method_id)?;
        if Self::gift_card_short(method, diff.value()) {
            return Err(PyErr::value(
                "Insufficient gift card balance to pay for the price difference",
            ));
        }
        let exchange_items = Iterable::new(item_ids)?.sorted();
        let exchange_new_items = Iterable::new(new_item_ids)?.sorted();
        let order = self.order_mut(key)?;
        order["status"] = json!("exchange requested");
        order["exchange_items"] = Value::Array(exchange_items);
        order["exchange_new_items"] = Value::Array(exchange_new_items);
        order["exchange_payment_method_id"] = method_id.clone();
        order["exchange_price_difference"] = diff.to_json();
        Ok(model(order))
    }

    pub(super) fn modify_pending_order_address(
        &mut self,
        order_id: &Value,
        args: &serde_json::Map<String, Value>,
    ) -> PyResult<ToolResult> {
        let key = self.key("orders", order_id, "Order")?;
        if !is_pending(self.order(order_id)?) {
            return Err(PyErr::value("Non-pending order cannot be modified"));
        }
        let address = Self::address_from(args)?;
        let order = self.order_mut(key)?;
        order["address"] = address;
        Ok(model(order))
    }

    /// Upstream bug kept: every modified item gets the price and options of
    /// the *last* new variant checked, not its own.
    pub(super) fn modify_pending_order_items(
        &mut self,
        order_id: &Value,
        item_ids: &Value,
        new_item_ids: &Value,
        method_id: &Value,
    ) -> PyResult<ToolResult> {
        let key = self.key("orders", order_id, "Order")?;
        let order = self.order(order_id)?;
        // Exactly "pending": items can be modified only once.
        if order["status"] != "pending" {
            return Err(PyErr::value("Non-pending order cannot be modified"));
        }
        Self::check_items(order, item_ids, |id| format!("{} not found", py::str(id)))?;
        let Priced {
            pairs,
            diff,
            last_variant,
        } = self.price_new_items(
            order,
            item_ids,
            new_item_ids,
            "The number of items to be exchanged should match",
            true,
        )?;
        let user_id = order["user_id"].clone();
        let method = self.payment_method(&user_id, method_id)?;
        if Self::gift_card_short(method, diff.value()) {
            return Err(PyErr::value(
                "Insufficient gift card balance to pay for the new item",
            ));
        }
        let kind = if diff.value() > 0.0 {
            "payment"
        } else {
            "refund"
        };
        let payment = order_payment(kind, diff.value().abs(), method_id);
        push_payments(self.order_mut(key)?, [payment]);
        self.adjust_gift_card(&user_id, method_id, -diff.value())?;
        let order = self.order_mut(key)?;
        for (item_id, new_item_id) in &pairs {
            let item = order["items"]
                .as_array_mut()
                .and_then(|items| items.iter_mut().find(|i| py::eq(&i["item_id"], item_id)))
                .ok_or_else(|| PyErr::value(format!("Item {} not found", py::str(item_id))))?;
            item["item_id"] = new_item_id.clone();
            if let Some(variant) = &last_variant {
                item["price"] = variant["price"].clone();
                item["options"] = variant["options"].clone();
            }
        }
        order["status"] = json!("pending (item modified)");
        Ok(model(order))
    }

    pub(super) fn modify_pending_order_payment(
        &mut self,
        order_id: &Value,
        method_id: &Value,
    ) -> PyResult<ToolResult> {
        let key = self.key("orders", order_id, "Order")?;
        let order = self.order(order_id)?;
        if !is_pending(order) {
            return Err(PyErr::value("Non-pending order cannot be modified"));
        }
        let user_id = order["user_id"].clone();
        let method = self.payment_method(&user_id, method_id)?;
        let history = order_items_of(order, "payment_history");
        let [first] = history.as_slice() else {
            return Err(one_payment_error());
        };
        if first["transaction_type"] != "payment" {
            return Err(one_payment_error());
        }
        let old_method_id = first["payment_method_id"].clone();
        if py::eq(&old_method_id, method_id) {
            return Err(PyErr::value(
                "The new payment method should be different from the current one",
            ));
        }
        let amount = number(&first["amount"]);
        if Self::gift_card_short(method, amount) {
            return Err(PyErr::value(
                "Insufficient gift card balance to pay for the order",
            ));
        }
        push_payments(
            self.order_mut(key)?,
            [
                order_payment("payment", amount, method_id),
                order_payment("refund", amount, &old_method_id),
            ],
        );
        self.adjust_gift_card(&user_id, method_id, -amount)?;
        self.adjust_gift_card(&user_id, &old_method_id, amount)?;
        Ok(model(self.order(order_id)?))
    }

    pub(super) fn return_delivered_order_items(
        &mut self,
        order_id: &Value,
        item_ids: &Value,
        method_id: &Value,
    ) -> PyResult<ToolResult> {
        let key = self.key("orders", order_id, "Order")?;
        let order = self.order(order_id)?;
        if order["status"] != "delivered" {
            return Err(PyErr::value("Non-delivered order cannot be returned"));
        }
        let user_id = &self.user(&order["user_id"])?["user_id"];
        let method = self.payment_method(user_id, method_id)?;
        if !is_gift_card(method) {
            let original = order["payment_history"]
                .get(0)
                .ok_or_else(|| PyErr::new("IndexError", "list index out of range"))?;
            if !py::eq(method_id, &original["payment_method_id"]) {
                return Err(PyErr::value(
                    "Payment method should be the original payment method",
                ));
            }
        }
        Self::check_items(order, item_ids, |_| "Some item not found".into())?;
        let return_items = Iterable::new(item_ids)?.sorted();
        let order = self.order_mut(key)?;
        order["status"] = json!("return requested");
        order["return_items"] = Value::Array(return_items);
        order["return_payment_method_id"] = method_id.clone();
        Ok(model(order))
    }
}

/// `_is_pending_order`: any status containing "pending".
fn is_pending(order: &Value) -> bool {
    order["status"]
        .as_str()
        .is_some_and(|s| s.contains("pending"))
}

fn one_payment_error() -> PyErr {
    PyErr::value("There should be exactly one payment for a pending order")
}

fn order_items(order: &Value) -> &[Value] {
    order["items"].as_array().map_or(&[], Vec::as_slice)
}

fn order_items_of(order: &Value, field: &str) -> Vec<Value> {
    order[field].as_array().cloned().unwrap_or_default()
}

fn push_payments<const N: usize>(order: &mut Value, payments: [Value; N]) {
    if let Some(history) = order["payment_history"].as_array_mut() {
        history.extend(payments);
    }
}
