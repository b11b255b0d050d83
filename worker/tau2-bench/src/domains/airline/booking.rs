//! The write tools: booking, cancellation, the three updates, certificates.

use serde_json::{Map, Value, json};

use super::args::{
    Booking, FLIGHT_INFO, Items, PASSENGER, PAYMENT, finish, new_reservation, payment, py_len,
};
use super::num::{self, float_value};
use super::{Airline, NOW, arg, broken, find};
use crate::env::{PyErr, PyResult};
use crate::py::pydantic::Validator;
use crate::py::{self, Num};
use crate::tool::ToolResult;

/// Reservation ids handed out in order (the official code assumes at most
/// three bookings per task).
const NEW_RESERVATION_IDS: [&str; 3] = ["HATHAT", "HATHAU", "HATHAV"];
const NEW_CERTIFICATE_IDS: [&str; 3] = [
    "certificate_3221322",
    "certificate_3221323",
    "certificate_3221324",
];

/// A cabin's entry of a flight date's `available_seats` or `prices`.
fn cabin_entry(table: &Value, cabin: &Value) -> PyResult<Num> {
    let map = table.as_object().ok_or_else(|| broken("cabin table"))?;
    find(map, cabin)?
        .and_then(|(_, v)| num::num(v))
        .ok_or_else(|| PyErr::key(cabin))
}

fn field_str<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name].as_str().unwrap_or_default()
}

/// A validated reservation flight's price.
fn price(flight: &Value) -> Num {
    num::num(&flight["price"]).unwrap_or(Num::Int(0))
}

/// Gift-card and certificate balances.
fn balance(method: &Value) -> f64 {
    method["amount"].as_f64().unwrap_or(0.0)
}

impl Airline {
    /// A bookable flight date, checked as booking and flight changes do;
    /// returns the reservation flight entry and its price.
    fn bookable(&self, info: &Value, cabin: &Value, passengers: usize) -> PyResult<(Value, Num)> {
        let (number, date) = (&info["flight_number"], &info["date"]);
        let flight = self.flight(number)?;
        let instance = self.flight_date(number, date)?;
        if instance["status"] != "available" {
            return Err(PyErr::value(format!(
                "Flight {} not available on date {}",
                py::str(number),
                py::str(date)
            )));
        }
        if cabin_entry(&instance["available_seats"], cabin)? < Num::Int(passengers as i128) {
            return Err(PyErr::value(format!(
                "Not enough seats on flight {}",
                py::str(number)
            )));
        }
        let price = cabin_entry(&instance["prices"], cabin)?;
        let entry = json!({
            "flight_number": number,
            "origin": flight["origin"],
            "destination": flight["destination"],
            "date": date,
            "price": num::to_value(price),
        });
        Ok((entry, price))
    }

    fn payment_methods_mut(&mut self, user_key: &str) -> PyResult<&mut Map<String, Value>> {
        self.user_mut(user_key)?["payment_methods"]
            .as_object_mut()
            .ok_or_else(|| broken("payment methods"))
    }

    pub(super) fn book_reservation(&mut self, a: &Map<String, Value>) -> PyResult<ToolResult> {
        let flights = Items::convert(arg(a, "flights"), &FLIGHT_INFO)?;
        let passengers = Items::convert(arg(a, "passengers"), &PASSENGER)?;
        let payments = Items::convert(arg(a, "payment_methods"), &PAYMENT)?;
        let user_key = self.user_key(arg(a, "user_id"))?;
        let reservations = self.table("reservations")?;
        let id = NEW_RESERVATION_IDS
            .into_iter()
            .find(|id| !reservations.contains_key(id))
            .ok_or_else(|| PyErr::value("Too many reservations"))?;
        let mut reservation = new_reservation(&Booking {
            id,
            user_id: &user_key,
            created_at: NOW,
            args: a,
            passengers: &passengers,
            payments: &payments,
        })?;
        let cabin = arg(a, "cabin");
        let travellers = passengers.len()?;
        let count = Num::Int(travellers as i128);
        let infos = flights.models("flight_number")?;
        let (entries, mut total) = self.price_flights(infos, cabin, travellers)?;
        reservation["flights"] = Value::Array(entries);
        if arg(a, "insurance") == "yes" {
            total = num::add(total, num::mul(Num::Int(30), count));
        }
        total = add_baggage_fee(total, arg(a, "nonfree_baggages"))?;

        let payments = payments.models("payment_id")?;
        self.check_booking_payments(&user_key, payments, total)?;
        self.charge_booking_payments(&user_key, payments)?;
        // A flight listed twice loses seats twice (each checked alone).
        for info in infos {
            let (number, date) = (field_str(info, "flight_number"), field_str(info, "date"));
            self.take_seats(number, date, cabin, count)?;
        }
        self.table_mut("reservations")?
            .insert(id.into(), reservation.clone());
        if let Some(list) = self.user_mut(&user_key)?["reservations"].as_array_mut() {
            list.push(Value::String(id.into()));
        }
        Ok(ToolResult::Model(reservation))
    }

    /// The booked flights' entries and their price for all travellers.
    fn price_flights(
        &self,
        infos: &[Value],
        cabin: &Value,
        travellers: usize,
    ) -> PyResult<(Vec<Value>, Num)> {
        let count = Num::Int(travellers as i128);
        let mut total = Num::Int(0);
        let mut entries = Vec::with_capacity(infos.len());
        for info in infos {
            let (entry, price) = self.bookable(info, cabin, travellers)?;
            entries.push(entry);
            total = num::add(total, num::mul(price, count));
        }
        Ok((entries, total))
    }

    /// Every payment method must exist and cover its amount; the amounts
    /// must add up to the total.
    fn check_booking_payments(
        &self,
        user_key: &str,
        payments: &[Value],
        total: Num,
    ) -> PyResult<()> {
        let methods = self.user(user_key)?["payment_methods"]
            .as_object()
            .ok_or_else(|| broken("payment methods"))?;
        let mut paid = Num::Int(0);
        for p in payments {
            let id = field_str(p, "payment_id");
            let amount = num::num(&p["amount"]).unwrap_or(Num::Int(0));
            let method = methods
                .get(id)
                .ok_or_else(|| PyErr::value(format!("Payment method {id} not found")))?;
            let stored_value = matches!(field_str(method, "source"), "gift_card" | "certificate");
            if stored_value && Num::Float(balance(method)) < amount {
                return Err(PyErr::value(format!(
                    "Not enough balance in payment method {id}"
                )));
            }
            paid = num::add(paid, amount);
        }
        if paid != total {
            return Err(PyErr::value(format!(
                "Payment amount does not add up, total price is {}, but paid {}",
                num::to_str(total),
                num::to_str(paid)
            )));
        }
        Ok(())
    }

    /// Debits gift cards; a used certificate is removed whole (upstream
    /// keeps no remainder). Listing one certificate twice fails on the
    /// second use with a `KeyError`, after the earlier debits.
    fn charge_booking_payments(&mut self, user_key: &str, payments: &[Value]) -> PyResult<()> {
        let methods = self.payment_methods_mut(user_key)?;
        for p in payments {
            let id = field_str(p, "payment_id");
            let amount = num::num(&p["amount"]).unwrap_or(Num::Int(0));
            let method = methods
                .get_mut(id)
                .ok_or_else(|| PyErr::key(&p["payment_id"]))?;
            match field_str(method, "source") {
                "gift_card" => {
                    method["amount"] = float_value(balance(method) - amount.as_f64());
                }
                "certificate" => {
                    methods.shift_remove(id);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn take_seats(&mut self, number: &str, date: &str, cabin: &Value, count: Num) -> PyResult<()> {
        let cabin = cabin.as_str().unwrap_or_default();
        let seats = self
            .table_mut("flights")?
            .get_mut(number)
            .and_then(|f| f["dates"].get_mut(date))
            .and_then(|d| d["available_seats"].get_mut(cabin))
            .ok_or_else(|| broken("seat count"))?;
        let left = num::sub(num::num(seats).unwrap_or(Num::Int(0)), count);
        *seats = num::to_value(left);
        Ok(())
    }

    /// Refunds every payment (again, if already cancelled) and marks the
    /// reservation cancelled; seats are not released (upstream quirk).
    pub(super) fn cancel_reservation(&mut self, a: &Map<String, Value>) -> PyResult<ToolResult> {
        let key = self.reservation_key(arg(a, "reservation_id"))?;
        let reservation = self.reservation_mut(&key)?;
        let history = reservation["payment_history"]
            .as_array_mut()
            .ok_or_else(|| broken("payment history"))?;
        let refunds: Vec<Value> = history
            .iter()
            .map(|p| {
                let amount = num::neg(num::num(&p["amount"]).unwrap_or(Num::Int(0)));
                json!({"payment_id": p["payment_id"], "amount": num::to_value(amount)})
            })
            .collect();
        history.extend(refunds);
        reservation["status"] = json!("cancelled");
        Ok(ToolResult::Model(reservation.clone()))
    }

    /// `_payment_for_update`: debits a gift card (before the `Payment` is
    /// validated, so a fractional amount fails after the debit) and returns
    /// the payment to record, if the amount is not zero.
    fn payment_for_update(
        &mut self,
        user_key: &str,
        payment_id: &Value,
        total: Num,
    ) -> PyResult<Option<Value>> {
        let methods = self.payment_methods_mut(user_key)?;
        let key = find(methods, payment_id)?
            .map(|(k, _)| k.clone())
            .ok_or_else(|| PyErr::value("Payment method not found"))?;
        let method = methods
            .get_mut(&key)
            .ok_or_else(|| broken("payment method"))?;
        match field_str(method, "source") {
            "certificate" => {
                return Err(PyErr::value(
                    "Certificate cannot be used to update reservation",
                ));
            }
            "gift_card" => {
                if Num::Float(balance(method)) < total {
                    return Err(PyErr::value("Gift card balance is not enough"));
                }
                method["amount"] = float_value(balance(method) - total.as_f64());
            }
            _ => {}
        }
        if num::is_zero(total) {
            return Ok(None);
        }
        payment(payment_id, num::to_value(total)).map(Some)
    }

    fn record_payment(&mut self, key: &str, payment: Option<Value>) -> PyResult<()> {
        if let Some(payment) = payment {
            self.reservation_mut(key)?["payment_history"]
                .as_array_mut()
                .ok_or_else(|| broken("payment history"))?
                .push(payment);
        }
        Ok(())
    }

    /// Charges `50 * max(0, new - old)` for non-free bags and stores the
    /// new counts as given.
    pub(super) fn update_reservation_baggages(
        &mut self,
        a: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        let key = self.reservation_key(arg(a, "reservation_id"))?;
        let reservation = self.reservation(&key)?;
        let user_key = self.user_key(&reservation["user_id"])?;
        let extra = num::sub_values(arg(a, "nonfree_baggages"), &reservation["nonfree_baggages"])?;
        let total = num::mul(Num::Int(50), num::max0(extra));
        let payment = self.payment_for_update(&user_key, arg(a, "payment_id"), total)?;
        self.record_payment(&key, payment)?;
        let reservation = self.reservation_mut(&key)?;
        reservation["total_baggages"] = arg(a, "total_baggages").clone();
        reservation["nonfree_baggages"] = arg(a, "nonfree_baggages").clone();
        Ok(ToolResult::Model(reservation.clone()))
    }

    /// Replaces the flights: a segment already booked (same number and date,
    /// cabin unchanged) keeps its price; others are checked and priced now.
    /// The difference is charged or refunded; seats are not updated.
    pub(super) fn update_reservation_flights(
        &mut self,
        a: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        let flights = Items::convert(arg(a, "flights"), &FLIGHT_INFO)?;
        let key = self.reservation_key(arg(a, "reservation_id"))?;
        let reservation = self.reservation(&key)?;
        let user_key = self.user_key(&reservation["user_id"])?;
        let cabin = arg(a, "cabin");
        let travellers = py_len(&reservation["passengers"])?;
        let count = Num::Int(travellers as i128);
        let old_flights = reservation["flights"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let same_cabin = py::eq(cabin, &reservation["cabin"]);

        let mut total = Num::Int(0);
        let mut new_flights = Vec::new();
        for info in flights.models("flight_number")? {
            let kept = old_flights.iter().find(|f| {
                f["flight_number"] == info["flight_number"]
                    && f["date"] == info["date"]
                    && same_cabin
            });
            let (entry, price) = match kept {
                Some(f) => (f.clone(), price(f)),
                None => self.bookable(info, cabin, travellers)?,
            };
            total = num::add(total, num::mul(price, count));
            new_flights.push(entry);
        }
        let paid = old_flights.iter().map(price).fold(Num::Int(0), num::add);
        total = num::sub(total, num::mul(paid, count));

        let payment = self.payment_for_update(&user_key, arg(a, "payment_id"), total)?;
        self.record_payment(&key, payment)?;
        let reservation = self.reservation_mut(&key)?;
        reservation["flights"] = Value::Array(new_flights);
        reservation["cabin"] = cabin.clone();
        Ok(ToolResult::Model(reservation.clone()))
    }

    /// Replaces the passengers (same count), stored as given when the
    /// argument was not a list of dicts.
    pub(super) fn update_reservation_passengers(
        &mut self,
        a: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        let passengers = Items::convert(arg(a, "passengers"), &PASSENGER)?;
        let key = self.reservation_key(arg(a, "reservation_id"))?;
        let reservation = self.reservation_mut(&key)?;
        if passengers.len()? != py_len(&reservation["passengers"])? {
            return Err(PyErr::value("Number of passengers does not match"));
        }
        reservation["passengers"] = passengers.to_value();
        Ok(ToolResult::Model(reservation.clone()))
    }

    /// Adds the next free certificate id with the amount as a float; the
    /// message repeats the amount as given.
    pub(super) fn send_certificate(&mut self, a: &Map<String, Value>) -> PyResult<ToolResult> {
        let user_id = arg(a, "user_id");
        let user_key = self.user_key(user_id)?;
        let amount = arg(a, "amount");
        let methods = self.payment_methods_mut(&user_key)?;
        let id = NEW_CERTIFICATE_IDS
            .into_iter()
            .find(|id| !methods.contains_key(*id))
            .ok_or_else(|| PyErr::value("Too many certificates"))?;
        let mut check = Validator::new();
        let value = check.float("amount", amount);
        finish(check, "Certificate")?;
        methods.insert(
            id.into(),
            json!({"source": "certificate", "id": id, "amount": float_value(value.unwrap_or(0.0))}),
        );
        Ok(ToolResult::Text(format!(
            "Certificate {id} added to user {} with amount {}.",
            py::str(user_id),
            py::str(amount)
        )))
    }
}

/// `total_price += 50 * nonfree_baggages`, with the argument as given (the
/// reservation stores the validated int, but the price uses the original).
fn add_baggage_fee(total: Num, nonfree: &Value) -> PyResult<Num> {
    match (num::num(nonfree), nonfree) {
        (Some(n), _) => Ok(num::add(total, num::mul(Num::Int(50), n))),
        (None, Value::String(_) | Value::Array(_)) => Err(PyErr::type_error(format!(
            "unsupported operand type(s) for +=: '{}' and '{}'",
            total_type(total),
            py::type_name(nonfree)
        ))),
        (None, other) => Err(PyErr::type_error(format!(
            "unsupported operand type(s) for *: 'int' and '{}'",
            py::type_name(other)
        ))),
    }
}

fn total_type(n: Num) -> &'static str {
    match n {
        Num::Int(_) => "int",
        Num::Float(_) => "float",
    }
}
