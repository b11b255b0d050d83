//! The airline database as the official pydantic models declare it (field
//! order and number types matter: they fix `model_dump()` and the hash).
//! Used only to validate the database once; tools work on the JSON value.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlightDb {
    flights: IndexMap<String, Flight>,
    users: IndexMap<String, User>,
    reservations: IndexMap<String, Reservation>,
}

#[derive(Serialize, Deserialize)]
struct Flight {
    flight_number: String,
    origin: String,
    destination: String,
    scheduled_departure_time_est: String,
    scheduled_arrival_time_est: String,
    dates: IndexMap<String, FlightDateStatus>,
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
enum Cabin {
    Business,
    Economy,
    BasicEconomy,
}

/// One date of a flight; the `status` literal selects the union member.
#[derive(Serialize, Deserialize)]
#[serde(tag = "status")]
enum FlightDateStatus {
    #[serde(rename = "available")]
    Available {
        available_seats: IndexMap<Cabin, i64>,
        prices: IndexMap<Cabin, i64>,
    },
    #[serde(rename = "landed")]
    Landed {
        actual_departure_time_est: String,
        actual_arrival_time_est: String,
    },
    #[serde(rename = "cancelled")]
    Cancelled {},
    #[serde(rename = "delayed")]
    Delayed {
        estimated_departure_time_est: String,
        estimated_arrival_time_est: String,
    },
    #[serde(rename = "flying")]
    Flying {
        actual_departure_time_est: String,
        estimated_arrival_time_est: String,
    },
    #[serde(rename = "on time")]
    OnTime {
        estimated_departure_time_est: String,
        estimated_arrival_time_est: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Name {
    first_name: String,
    last_name: String,
}

#[derive(Serialize, Deserialize)]
struct Address {
    address1: String,
    #[serde(default)]
    address2: Option<String>,
    city: String,
    country: String,
    state: String,
    zip: String,
}

/// `Union[CreditCard, GiftCard, Certificate]`, told apart by `source`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
enum PaymentMethod {
    CreditCard {
        id: String,
        brand: String,
        last_four: String,
    },
    GiftCard {
        id: String,
        amount: f64,
    },
    Certificate {
        id: String,
        amount: f64,
    },
}

#[derive(Serialize, Deserialize)]
struct Passenger {
    first_name: String,
    last_name: String,
    dob: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Membership {
    Gold,
    Silver,
    Regular,
}

#[derive(Serialize, Deserialize)]
struct User {
    user_id: String,
    name: Name,
    address: Address,
    email: String,
    dob: String,
    payment_methods: IndexMap<String, PaymentMethod>,
    saved_passengers: Vec<Passenger>,
    membership: Membership,
    reservations: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ReservationFlight {
    flight_number: String,
    origin: String,
    destination: String,
    date: String,
    price: i64,
}

#[derive(Serialize, Deserialize)]
struct Payment {
    payment_id: String,
    amount: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FlightType {
    RoundTrip,
    OneWay,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Insurance {
    Yes,
    No,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReservationStatus {
    Cancelled,
}

#[derive(Serialize, Deserialize)]
struct Reservation {
    reservation_id: String,
    user_id: String,
    origin: String,
    destination: String,
    flight_type: FlightType,
    cabin: Cabin,
    flights: Vec<ReservationFlight>,
    passengers: Vec<Passenger>,
    payment_history: Vec<Payment>,
    created_at: String,
    total_baggages: i64,
    nonfree_baggages: i64,
    insurance: Insurance,
    #[serde(default)]
    status: Option<ReservationStatus>,
}
