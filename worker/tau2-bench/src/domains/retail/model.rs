//! The official retail data model (`domains/retail/data_model.py`), used only
//! to validate the database once: field order as declared (it fixes the
//! order of every tool result and of `model_dump()`), optional fields
//! defaulting to `null`, and float fields made floats.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct RetailDb {
    pub products: IndexMap<String, Product>,
    pub users: IndexMap<String, User>,
    pub orders: IndexMap<String, Order>,
}

#[derive(Serialize, Deserialize)]
pub struct Product {
    pub name: String,
    pub product_id: String,
    pub variants: IndexMap<String, Variant>,
}

#[derive(Serialize, Deserialize)]
pub struct Variant {
    pub item_id: String,
    pub options: IndexMap<String, String>,
    pub available: bool,
    pub price: f64,
}

#[derive(Serialize, Deserialize)]
pub struct UserName {
    pub first_name: String,
    pub last_name: String,
}

#[derive(Serialize, Deserialize)]
pub struct Address {
    pub address1: String,
    pub address2: String,
    pub city: String,
    pub country: String,
    pub state: String,
    pub zip: String,
}

/// `Union[CreditCard, GiftCard, Paypal]`, told apart by `source`, which
/// pydantic dumps first.
#[derive(Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PaymentMethod {
    CreditCard {
        id: String,
        brand: String,
        last_four: String,
    },
    GiftCard {
        id: String,
        balance: f64,
    },
    Paypal {
        id: String,
    },
}

#[derive(Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    pub name: UserName,
    pub address: Address,
    pub email: String,
    pub payment_methods: IndexMap<String, PaymentMethod>,
    pub orders: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub struct Fulfillment {
    pub tracking_id: Vec<String>,
    pub item_ids: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub struct OrderItem {
    pub name: String,
    pub product_id: String,
    pub item_id: String,
    pub price: f64,
    pub options: IndexMap<String, String>,
}

#[derive(Serialize, Deserialize)]
pub struct OrderPayment {
    pub transaction_type: TransactionType,
    pub amount: f64,
    pub payment_method_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    Payment,
    Refund,
}

#[derive(Serialize, Deserialize)]
pub enum OrderStatus {
    #[serde(rename = "processed")]
    Processed,
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "pending (item modified)")]
    PendingItemModified,
    #[serde(rename = "delivered")]
    Delivered,
    #[serde(rename = "cancelled")]
    Cancelled,
    #[serde(rename = "exchange requested")]
    ExchangeRequested,
    #[serde(rename = "return requested")]
    ReturnRequested,
}

#[derive(Serialize, Deserialize)]
pub enum CancelReason {
    #[serde(rename = "no longer needed")]
    NoLongerNeeded,
    #[serde(rename = "ordered by mistake")]
    OrderedByMistake,
}

#[derive(Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub user_id: String,
    pub address: Address,
    pub items: Vec<OrderItem>,
    pub status: OrderStatus,
    pub fulfillments: Vec<Fulfillment>,
    pub payment_history: Vec<OrderPayment>,
    #[serde(default)]
    pub cancel_reason: Option<CancelReason>,
    #[serde(default)]
    pub exchange_items: Option<Vec<String>>,
    #[serde(default)]
    pub exchange_new_items: Option<Vec<String>>,
    #[serde(default)]
    pub exchange_payment_method_id: Option<String>,
    #[serde(default)]
    pub exchange_price_difference: Option<f64>,
    #[serde(default)]
    pub return_items: Option<Vec<String>>,
    #[serde(default)]
    pub return_payment_method_id: Option<String>,
}
