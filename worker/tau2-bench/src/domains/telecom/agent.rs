//! The agent's toolkit (`TelecomTools`): customers, lines, bills and plans,
//! plus the helper functions that task initialisation and assertions call.
//!
//! Tables are lists searched in order, as upstream does (the first match
//! wins); they hold at most a dozen rows, so a scan beats any index.

use serde_json::{Map, Value, json};

use super::py_ops::{add, arg, compare, fixed2, float_value, number, str_for, sub, truthy};
use crate::env::{PyErr, PyResult};
use crate::py;
use crate::py::pydantic::Validator;
use crate::tool::ToolResult;

/// The fixed "today" of the domain (`get_today()`).
pub const TODAY: &str = "2025-02-25";
/// Last day of today's month: `get_data_usage`'s `cycle_end_date`.
const CYCLE_END: &str = "2025-02-28";
/// A new draft bill covers next month and is due 14 days after issue.
const NEXT_PERIOD: (&str, &str, &str) = ("2025-03-01", "2025-03-31", "2025-03-15");
/// An overdue bill covers last month and was due 14 days after issue.
const LAST_PERIOD: (&str, &str, &str) = ("2025-01-01", "2025-01-31", "2025-01-15");

const ACTIVE: &str = "Active";
const SUSPENDED: &str = "Suspended";
const PENDING_ACTIVATION: &str = "Pending Activation";
const DRAFT: &str = "Draft";
const AWAITING_PAYMENT: &str = "Awaiting Payment";
const PAID: &str = "Paid";
const OVERDUE: &str = "Overdue";

/// The agent's database (`TelecomDB.model_dump()`).
#[derive(Clone)]
pub struct AgentTools {
    pub db: Value,
}

/// A table and the name it has in "X with ID ... not found" errors.
#[derive(Clone, Copy)]
enum Table {
    Plans,
    Customers,
    Lines,
    Bills,
    Devices,
}

impl Table {
    fn key(self) -> &'static str {
        match self {
            Table::Plans => "plans",
            Table::Customers => "customers",
            Table::Lines => "lines",
            Table::Bills => "bills",
            Table::Devices => "devices",
        }
    }

    fn id_field(self) -> &'static str {
        match self {
            Table::Plans => "plan_id",
            Table::Customers => "customer_id",
            Table::Lines => "line_id",
            Table::Bills => "bill_id",
            Table::Devices => "device_id",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Table::Plans => "Plan",
            Table::Customers => "Customer",
            Table::Lines => "Line",
            Table::Bills => "Bill",
            Table::Devices => "Device",
        }
    }
}

impl AgentTools {
    // ------------------------------------------------------------ lookups

    fn rows(&self, table: Table) -> &[Value] {
        self.db[table.key()].as_array().map_or(&[], Vec::as_slice)
    }

    fn row(&self, table: Table, i: usize) -> &Value {
        self.rows(table).get(i).unwrap_or(&Value::Null)
    }

    fn row_mut(&mut self, table: Table, i: usize) -> Option<&mut Map<String, Value>> {
        self.db
            .get_mut(table.key())?
            .as_array_mut()?
            .get_mut(i)?
            .as_object_mut()
    }

    fn set(&mut self, table: Table, i: usize, field: &str, value: Value) {
        if let Some(row) = self.row_mut(table, i) {
            row.insert(field.into(), value);
        }
    }

    fn push(&mut self, table: Table, row: Value) {
        if let Some(rows) = self.db.get_mut(table.key()).and_then(Value::as_array_mut) {
            rows.push(row);
        }
    }

    fn find(&self, table: Table, field: &str, id: &Value) -> Option<usize> {
        self.rows(table).iter().position(|r| py::eq(&r[field], id))
    }

    /// `_get_<x>_by_id` / `get_customer_by_id`.
    fn by_id(&self, table: Table, id: &Value) -> PyResult<usize> {
        self.find(table, table.id_field(), id).ok_or_else(|| {
            PyErr::value(format!(
                "{} with ID {} not found",
                table.noun(),
                py::str(id)
            ))
        })
    }

    fn line_by_phone(&self, phone: &Value) -> PyResult<usize> {
        self.find(Table::Lines, "phone_number", phone)
            .ok_or_else(|| {
                PyErr::value(format!(
                    "Line with phone number {} not found",
                    py::str(phone)
                ))
            })
    }

    /// The first customer whose contact number, or one of whose lines, matches.
    fn customer_by_phone(&self, phone: &Value) -> PyResult<usize> {
        for (i, customer) in self.rows(Table::Customers).iter().enumerate() {
            if py::eq(&customer["phone_number"], phone) {
                return Ok(i);
            }
            for line_id in list(&customer["line_ids"]) {
                let line = self.by_id(Table::Lines, line_id)?;
                if py::eq(&self.row(Table::Lines, line)["phone_number"], phone) {
                    return Ok(i);
                }
            }
        }
        Err(PyErr::value(format!(
            "Customer with phone number {} not found",
            py::str(phone)
        )))
    }

    /// `_get_target_line`: the customer must own the line.
    fn target_line(&self, customer_id: &Value, line_id: &Value) -> PyResult<usize> {
        let customer = self.by_id(Table::Customers, customer_id)?;
        let owned = &self.row(Table::Customers, customer)["line_ids"];
        if !list(owned).iter().any(|l| py::eq(l, line_id)) {
            return Err(PyErr::value(format!(
                "Line {} not found for customer {}",
                py::str(line_id),
                py::str(customer_id)
            )));
        }
        self.by_id(Table::Lines, line_id)
    }

    fn customer_bills(&self, customer: usize) -> PyResult<Vec<usize>> {
        list(&self.row(Table::Customers, customer)["bill_ids"])
            .iter()
            .map(|id| self.by_id(Table::Bills, id))
            .collect()
    }

    fn bills_with_status(&self, customer: usize, status: &str) -> PyResult<Vec<usize>> {
        Ok(self
            .customer_bills(customer)?
            .into_iter()
            .filter(|b| self.row(Table::Bills, *b)["status"] == status)
            .collect())
    }

    /// The first Draft bill; the search stops there, as upstream's loop does.
    fn first_draft_bill(&self, customer: usize) -> PyResult<Option<usize>> {
        for id in list(&self.row(Table::Customers, customer)["bill_ids"]) {
            let bill = self.by_id(Table::Bills, id)?;
            if self.row(Table::Bills, bill)["status"] == DRAFT {
                return Ok(Some(bill));
            }
        }
        Ok(None)
    }

    fn line_plan(&self, line: usize) -> PyResult<usize> {
        self.by_id(Table::Plans, &self.row(Table::Lines, line)["plan_id"])
    }

    // ------------------------------------------------------------ for sync

    /// What `sync_tools` reads about the user's line: (active, roaming
    /// enabled, data usage exceeded).
    pub fn line_facts(&self, phone: &Value) -> PyResult<(bool, bool, bool)> {
        let line = self.line_by_phone(phone)?;
        let plan = self.line_plan(line)?;
        let row = self.row(Table::Lines, line);
        let allowance = add(
            &self.row(Table::Plans, plan)["data_limit_gb"],
            &row["data_refueling_gb"],
        )?;
        Ok((
            row["status"] == ACTIVE,
            truthy(&row["roaming_enabled"]),
            compare(">=", &row["data_used_gb"], &allowance)?,
        ))
    }

    pub fn set_bill_paid(&mut self, bill_id: &Value) -> PyResult<()> {
        let bill = self.by_id(Table::Bills, bill_id)?;
        self.set(Table::Bills, bill, "status", json!(PAID));
        Ok(())
    }

    /// The first bill awaiting payment of the customer with this phone
    /// number: (bill id, total due).
    pub fn bill_awaiting_payment(&self, phone: &Value) -> PyResult<Option<(Value, Value)>> {
        let customer = self.customer_by_phone(phone)?;
        let bills = self.bills_with_status(customer, AWAITING_PAYMENT)?;
        Ok(bills.first().map(|b| {
            let bill = self.row(Table::Bills, *b);
            (bill["bill_id"].clone(), bill["total_due"].clone())
        }))
    }

    // ------------------------------------------------------------ read tools

    pub fn get_customer_by_phone(&self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let i = self.customer_by_phone(arg(args, "phone_number"))?;
        Ok(ToolResult::Model(self.row(Table::Customers, i).clone()))
    }

    pub fn get_customer_by_id(&self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let i = self.by_id(Table::Customers, arg(args, "customer_id"))?;
        Ok(ToolResult::Model(self.row(Table::Customers, i).clone()))
    }

    pub fn get_customer_by_name(&self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let mut found = Vec::new();
        for customer in self.rows(Table::Customers) {
            let name = str_for(&customer["full_name"], "lower")?.to_lowercase();
            if name == str_for(arg(args, "full_name"), "lower")?.to_lowercase()
                && py::eq(&customer["date_of_birth"], arg(args, "dob"))
            {
                found.push(customer.clone());
            }
        }
        Ok(ToolResult::Model(Value::Array(found)))
    }

    pub fn get_details_by_id(&self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let id = arg(args, "id");
        let text = str_for(id, "startswith")?;
        let table = match text.chars().next() {
            Some('L') => Table::Lines,
            Some('D') => Table::Devices,
            Some('B') => Table::Bills,
            Some('C') => Table::Customers,
            Some('P') => Table::Plans,
            _ => {
                return Err(PyErr::value(format!("Unknown ID format or type: {text}")));
            }
        };
        let i = self.by_id(table, id)?;
        Ok(ToolResult::Model(self.row(table, i).clone()))
    }

    /// Newest first by issue date (a stable sort), then `[:limit]`.
    pub fn get_bills_for_customer(&self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let customer = self.by_id(Table::Customers, arg(args, "customer_id"))?;
        let mut bills: Vec<&Value> = self
            .customer_bills(customer)?
            .into_iter()
            .map(|b| self.row(Table::Bills, b))
            .collect();
        // ISO dates order as text; sorted(..., reverse=True) is stable.
        bills.sort_by(|a, b| b["issue_date"].as_str().cmp(&a["issue_date"].as_str()));
        let end = slice_end(args.get("limit").unwrap_or(&json!(12)), bills.len())?;
        Ok(ToolResult::Model(Value::Array(
            bills.into_iter().take(end).cloned().collect(),
        )))
    }

    pub fn get_data_usage(&self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let line = self.target_line(arg(args, "customer_id"), arg(args, "line_id"))?;
        let plan = self.line_plan(line)?;
        let row = self.row(Table::Lines, line);
        Ok(ToolResult::Plain(json!({
            "line_id": arg(args, "line_id"),
            "data_used_gb": row["data_used_gb"],
            "data_limit_gb": self.row(Table::Plans, plan)["data_limit_gb"],
            "data_refueling_gb": row["data_refueling_gb"],
            "cycle_end_date": CYCLE_END,
        })))
    }

    // ------------------------------------------------------------ write tools

    pub fn suspend_line(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let line = self.target_line(arg(args, "customer_id"), arg(args, "line_id"))?;
        if self.row(Table::Lines, line)["status"] != ACTIVE {
            return Err(PyErr::value("Line must be active to suspend"));
        }
        self.set(Table::Lines, line, "status", json!(SUSPENDED));
        self.set(Table::Lines, line, "suspension_start_date", json!(TODAY));
        Ok(self.line_message(
            line,
            "Line suspended successfully. $5/month holding fee will apply.",
        ))
    }

    pub fn resume_line(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let line = self.target_line(arg(args, "customer_id"), arg(args, "line_id"))?;
        let status = &self.row(Table::Lines, line)["status"];
        if status != SUSPENDED && status != PENDING_ACTIVATION {
            return Err(PyErr::value("Line must be suspended to resume"));
        }
        self.set(Table::Lines, line, "status", json!(ACTIVE));
        self.set(Table::Lines, line, "suspension_start_date", Value::Null);
        Ok(self.line_message(line, "Line resumed successfully"))
    }

    /// `{"message": ..., "line": Line}`: the model inside a plain dict keeps
    /// its native JSON types.
    fn line_message(&self, line: usize, message: &str) -> ToolResult {
        ToolResult::Model(json!({"message": message, "line": self.row(Table::Lines, line)}))
    }

    pub fn send_payment_request(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let (customer_id, bill_id) = (arg(args, "customer_id"), arg(args, "bill_id"));
        let customer = self.by_id(Table::Customers, customer_id)?;
        if !self
            .bills_with_status(customer, AWAITING_PAYMENT)?
            .is_empty()
        {
            return Err(PyErr::value(
                "A bill is already awaiting payment for this customer",
            ));
        }
        let owned = &self.row(Table::Customers, customer)["bill_ids"];
        if !list(owned).iter().any(|b| py::eq(b, bill_id)) {
            return Err(PyErr::value(format!(
                "Bill {} not found for customer {}",
                py::str(bill_id),
                py::str(customer_id)
            )));
        }
        let bill = self.by_id(Table::Bills, bill_id)?;
        self.set(Table::Bills, bill, "status", json!(AWAITING_PAYMENT));
        Ok(ToolResult::Text(format!(
            "Payment request sent to the customer for bill {}",
            py::str(&self.row(Table::Bills, bill)["bill_id"])
        )))
    }

    pub fn enable_roaming(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        self.set_roaming(args, true)
    }

    pub fn disable_roaming(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        self.set_roaming(args, false)
    }

    fn set_roaming(&mut self, args: &Map<String, Value>, enable: bool) -> PyResult<ToolResult> {
        let line = self.target_line(arg(args, "customer_id"), arg(args, "line_id"))?;
        let word = if enable { "enabled" } else { "disabled" };
        if truthy(&self.row(Table::Lines, line)["roaming_enabled"]) == enable {
            return Ok(ToolResult::Text(format!("Roaming was already {word}")));
        }
        self.set(Table::Lines, line, "roaming_enabled", json!(enable));
        Ok(ToolResult::Text(format!("Roaming {word} successfully")))
    }

    pub fn refuel_data(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let (customer_id, line_id, gb) = (
            arg(args, "customer_id"),
            arg(args, "line_id"),
            arg(args, "gb_amount"),
        );
        let line = self.target_line(customer_id, line_id)?;
        if compare("<=", gb, &json!(0))? {
            return Err(PyErr::value("Refuel amount must be positive"));
        }
        let plan = self.line_plan(line)?;
        let price = self.row(Table::Plans, plan)["data_refueling_price_per_gb"].clone();
        let charge = times(gb, &price)?;
        let refueled = add(&self.row(Table::Lines, line)["data_refueling_gb"], gb)?;
        self.set(Table::Lines, line, "data_refueling_gb", refueled.clone());
        let description = format!(
            "Data refueling: {} GB at ${}/GB",
            py::str(gb),
            py::str(&price)
        );
        self.apply_one_time_charge(customer_id, charge, description)?;
        Ok(ToolResult::Plain(json!({
            "message": format!(
                "Successfully added {} GB of data for line {} for ${}",
                py::str(gb),
                py::str(line_id),
                fixed2(charge)
            ),
            "new_data_refueling_gb": refueled,
            "charge": float_value(charge),
        })))
    }

    /// Adds a charge to the customer's Draft bill, creating one for next
    /// month (with a random `B` + 8 hex id, as upstream's uuid4) if needed.
    fn apply_one_time_charge(
        &mut self,
        customer_id: &Value,
        amount: f64,
        description: String,
    ) -> PyResult<()> {
        let customer = self.by_id(Table::Customers, customer_id)?;
        let bill = match self.first_draft_bill(customer)? {
            Some(b) => b,
            None => self.new_draft_bill(customer, customer_id),
        };
        let item_type = if amount < 0.0 { "Credit" } else { "Charge" };
        let item = json!({"description": description, "amount": float_value(amount), "date": TODAY, "item_type": item_type});
        self.add_line_item(bill, item, &float_value(amount))
    }

    fn new_draft_bill(&mut self, customer: usize, customer_id: &Value) -> usize {
        let (start, end, due) = NEXT_PERIOD;
        let id = random_bill_id();
        self.push(
            Table::Bills,
            bill(&id, customer_id, (start, end, start, due), DRAFT),
        );
        self.push_bill_id(customer, id);
        self.rows(Table::Bills).len().saturating_sub(1)
    }

    fn push_bill_id(&mut self, customer: usize, id: String) {
        if let Some(ids) = self
            .row_mut(Table::Customers, customer)
            .and_then(|c| c.get_mut("bill_ids"))
            .and_then(Value::as_array_mut)
        {
            ids.push(Value::String(id));
        }
    }

    fn add_line_item(&mut self, bill: usize, item: Value, amount: &Value) -> PyResult<()> {
        let total = add(&self.row(Table::Bills, bill)["total_due"], amount)?;
        if let Some(row) = self.row_mut(Table::Bills, bill) {
            if let Some(items) = row.get_mut("line_items").and_then(Value::as_array_mut) {
                items.push(item);
            }
            row.insert("total_due".into(), total);
        }
        Ok(())
    }

    // ------------------------------------------------------------ helpers

    pub fn set_data_usage(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let line = self.target_line(arg(args, "customer_id"), arg(args, "line_id"))?;
        // No validation on assignment: the value is stored as given.
        self.set(
            Table::Lines,
            line,
            "data_used_gb",
            arg(args, "data_used_gb").clone(),
        );
        Ok(ToolResult::Text(format!(
            "Data usage set to {} GB for line {}",
            py::str(arg(args, "data_used_gb")),
            py::str(arg(args, "line_id"))
        )))
    }

    pub fn suspend_line_for_overdue_bill(
        &mut self,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        let (customer_id, line_id) = (arg(args, "customer_id"), arg(args, "line_id"));
        let (new_bill_id, contract_ended) = (arg(args, "new_bill_id"), arg(args, "contract_ended"));
        let line = self.by_id(Table::Lines, line_id)?;
        if self.row(Table::Lines, line)["status"] != ACTIVE {
            return Err(PyErr::value(
                "Line must be active to suspend for unpaid bill",
            ));
        }
        let plan = self.line_plan(line)?;
        let amount = self.row(Table::Plans, plan)["price_per_month"].clone();
        let description = format!(
            "Charge for line {}",
            py::str(&self.row(Table::Lines, line)["line_id"])
        );
        if compare("<=", &amount, &json!(0))? {
            return Err(PyErr::value("Amount must be positive for overdue bill"));
        }
        let customer = self.by_id(Table::Customers, customer_id)?;
        if !self.bills_with_status(customer, OVERDUE)?.is_empty() {
            return Err(PyErr::value("Customer already has an overdue bill"));
        }
        let mut check = Validator::new();
        check.str("bill_id", new_bill_id);
        check.str("customer_id", customer_id);
        check
            .finish("Bill")
            .map_err(|e| PyErr::new("ValidationError", e.to_string()))?;
        let (start, end, due) = LAST_PERIOD;
        let id = new_bill_id.as_str().unwrap_or_default().to_owned();
        self.push(
            Table::Bills,
            bill(&id, customer_id, (start, end, start, due), OVERDUE),
        );
        let item = json!({"description": description, "amount": amount, "date": TODAY, "item_type": "Charge"});
        let index = self.rows(Table::Bills).len().saturating_sub(1);
        self.add_line_item(index, item, &amount)?;
        self.push_bill_id(customer, id);
        self.set(Table::Lines, line, "status", json!(SUSPENDED));
        self.set(Table::Lines, line, "suspension_start_date", json!(TODAY));
        if truthy(contract_ended) {
            self.set(Table::Lines, line, "contract_end_date", json!(end));
        }
        Ok(ToolResult::Text(format!(
            "Line {} suspended for unpaid bill {}. Contract ended: {}",
            py::str(line_id),
            py::str(new_bill_id),
            py::str(contract_ended)
        )))
    }

    pub fn get_available_plan_ids(&self) -> ToolResult {
        let ids = self.rows(Table::Plans).iter().map(|p| p["plan_id"].clone());
        ToolResult::Plain(Value::Array(ids.collect()))
    }

    // ------------------------------------------------------------ assertions

    pub fn assert_data_refueling_amount(&self, args: &Map<String, Value>) -> PyResult<bool> {
        let line = self.target_line(arg(args, "customer_id"), arg(args, "line_id"))?;
        let refueled = &self.row(Table::Lines, line)["data_refueling_gb"];
        let diff = sub(refueled, arg(args, "expected_amount"))?;
        let diff = number(&diff).map_or(f64::NAN, |n| n.as_f64());
        Ok(diff.abs() < 1e-6)
    }

    pub fn assert_line_status(&self, args: &Map<String, Value>) -> PyResult<bool> {
        let line = self.target_line(arg(args, "customer_id"), arg(args, "line_id"))?;
        Ok(py::eq(
            &self.row(Table::Lines, line)["status"],
            arg(args, "expected_status"),
        ))
    }

    pub fn assert_overdue_bill_exists(&self, args: &Map<String, Value>) -> PyResult<bool> {
        let bill_id = arg(args, "overdue_bill_id");
        let customer = self.by_id(Table::Customers, arg(args, "customer_id"))?;
        let owned = &self.row(Table::Customers, customer)["bill_ids"];
        if !list(owned).iter().any(|b| py::eq(b, bill_id)) {
            return Err(PyErr::value(format!(
                "Overdue bill {} not found",
                py::str(bill_id)
            )));
        }
        let bill = self.by_id(Table::Bills, bill_id)?;
        if self.row(Table::Bills, bill)["status"] != OVERDUE {
            return Err(PyErr::value(format!(
                "Overdue bill {} is not overdue",
                py::str(bill_id)
            )));
        }
        Ok(true)
    }

    /// True when the bill is gone or paid.
    pub fn assert_no_overdue_bill(&self, args: &Map<String, Value>) -> bool {
        self.by_id(Table::Bills, arg(args, "overdue_bill_id"))
            .map_or(true, |b| self.row(Table::Bills, b)["status"] == PAID)
    }
}

/// A list field's items (empty for anything else).
fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A new bill as pydantic validates it (`total_due=0` becomes `0.0`).
fn bill(id: &str, customer_id: &Value, dates: (&str, &str, &str, &str), status: &str) -> Value {
    let (period_start, period_end, issue_date, due_date) = dates;
    json!({
        "bill_id": id,
        "customer_id": customer_id,
        "period_start": period_start,
        "period_end": period_end,
        "issue_date": issue_date,
        "total_due": 0.0,
        "due_date": due_date,
        "line_items": [],
        "status": status,
    })
}

/// `gb_amount * price` as a float (the price is always a float).
fn times(a: &Value, b: &Value) -> PyResult<f64> {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => Ok(x.as_f64() * y.as_f64()),
        _ => Err(PyErr::type_error(format!(
            "unsupported operand type(s) for *: '{}' and '{}'",
            py::type_name(a),
            py::type_name(b)
        ))),
    }
}

/// The end of `seq[:limit]`: Python slice semantics, or its `TypeError`.
fn slice_end(limit: &Value, len: usize) -> PyResult<usize> {
    let bad =
        || PyErr::type_error("slice indices must be integers or None or have an __index__ method");
    let n: i128 = match limit {
        Value::Null => return Ok(len),
        Value::Bool(b) => i128::from(*b),
        Value::Number(n) if !n.is_f64() => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let len_i = len as i128;
    let end = if n < 0 {
        (len_i + n).max(0)
    } else {
        n.min(len_i)
    };
    Ok(usize::try_from(end).unwrap_or(0))
}

/// `B` + the first 8 hex digits of a uuid4: 32 random bits from the std
/// hasher's per-process random keys (no RNG dependency needed for 8 digits).
fn random_bill_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("B{:08x}", hasher.finish() as u32)
}
