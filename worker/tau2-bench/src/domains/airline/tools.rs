//! The airline agent tools as the official `AirlineTools` declares them, in
//! its order; `openai_schema()` of each reproduces the official schema.

use serde_json::{Value, json};

use crate::tool::{ToolKind, ToolSpec, Ty, p};

const FLIGHT_TYPE: &[&str] = &["round_trip", "one_way"];
const CABIN: &[&str] = &["business", "economy", "basic_economy"];
const INSURANCE: &[&str] = &["yes", "no"];

const PAYMENT_ID_DOC: &str = "The payment id stored in user profile, such as 'credit_card_7815826', 'gift_card_7815826', 'certificate_7815826'.";
const ORIGIN_DOC: &str = "The origin city airport in three letters, such as 'JFK'.";
const DESTINATION_DOC: &str = "The destination city airport in three letters, such as 'LAX'.";
const PASSENGERS_DOC: &str = "An array of objects containing details about each passenger.";

/// `List[Model | dict]`: pydantic's schema for a list of a nested model or any dict.
fn list_of(model: &str) -> Value {
    json!({
        "items": {"anyOf": [
            {"$ref": format!("#/$defs/{model}")},
            {"additionalProperties": true, "type": "object"},
        ]},
        "type": "array",
    })
}

fn flight_infos() -> Value {
    list_of("FlightInfo")
}

fn passengers() -> Value {
    list_of("Passenger")
}

fn payments() -> Value {
    list_of("Payment")
}

fn string_field(title: &str, description: &str) -> Value {
    json!({"description": description, "title": title, "type": "string"})
}

fn model_def(title: &str, properties: Value) -> Value {
    let required: Vec<Value> = properties
        .as_object()
        .map(|m| m.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    json!({"properties": properties, "required": required, "title": title, "type": "object"})
}

fn flight_info_def() -> Value {
    model_def(
        "FlightInfo",
        json!({
            "flight_number": string_field("Flight Number", "Flight number, such as 'HAT001'."),
            "date": string_field("Date", "The date for the flight in the format 'YYYY-MM-DD', such as '2024-05-01'."),
        }),
    )
}

fn passenger_def() -> Value {
    model_def(
        "Passenger",
        json!({
            "first_name": string_field("First Name", "Passenger's first name"),
            "last_name": string_field("Last Name", "Passenger's last name"),
            "dob": string_field("Dob", "Date of birth in YYYY-MM-DD format"),
        }),
    )
}

fn payment_def() -> Value {
    model_def(
        "Payment",
        json!({
            "payment_id": string_field("Payment Id", "Unique identifier for the payment"),
            "amount": {"description": "Payment amount in dollars", "title": "Amount", "type": "integer"},
        }),
    )
}

fn booking_defs() -> Value {
    json!({"FlightInfo": flight_info_def(), "Passenger": passenger_def(), "Payment": payment_def()})
}

fn flight_info_defs() -> Value {
    json!({"FlightInfo": flight_info_def()})
}

fn passenger_defs() -> Value {
    json!({"Passenger": passenger_def()})
}

const fn tool(
    name: &'static str,
    qualname: &'static str,
    kind: ToolKind,
    short: &'static str,
    params: &'static [crate::tool::ParamSpec],
) -> ToolSpec {
    ToolSpec {
        name,
        kind,
        qualname,
        short,
        long: "",
        params,
        defs: None,
    }
}

pub(super) static TOOLS: &[ToolSpec] = &[
    ToolSpec {
        defs: Some(booking_defs),
        ..tool(
            "book_reservation",
            "AirlineTools.book_reservation",
            ToolKind::Write,
            "Book a reservation.",
            &[
                p(
                    "user_id",
                    Ty::Str,
                    "The ID of the user to book the reservation such as 'sara_doe_496'`.",
                ),
                p(
                    "origin",
                    Ty::Str,
                    "The IATA code for the origin city such as 'SFO'.",
                ),
                p(
                    "destination",
                    Ty::Str,
                    "The IATA code for the destination city such as 'JFK'.",
                ),
                p(
                    "flight_type",
                    Ty::Literal(FLIGHT_TYPE),
                    "The type of flight such as 'one_way' or 'round_trip'.",
                ),
                p(
                    "cabin",
                    Ty::Literal(CABIN),
                    "The cabin class such as 'basic_economy', 'economy', or 'business'.",
                ),
                p(
                    "flights",
                    Ty::Raw(flight_infos),
                    "An array of objects containing details about each piece of flight.",
                ),
                p("passengers", Ty::Raw(passengers), PASSENGERS_DOC),
                p(
                    "payment_methods",
                    Ty::Raw(payments),
                    "An array of objects containing details about each payment method.",
                ),
                p(
                    "total_baggages",
                    Ty::Int,
                    "The total number of baggage items to book the reservation.",
                ),
                p(
                    "nonfree_baggages",
                    Ty::Int,
                    "The number of non-free baggage items to book the reservation.",
                ),
                p(
                    "insurance",
                    Ty::Literal(INSURANCE),
                    "Whether the reservation has insurance.",
                ),
            ],
        )
    },
    tool(
        "calculate",
        "AirlineTools.calculate",
        ToolKind::Generic,
        "Calculate the result of a mathematical expression.",
        &[p(
            "expression",
            Ty::Str,
            "The mathematical expression to calculate, such as '2 + 2'. The expression can contain numbers, operators (+, -, *, /), parentheses, and spaces.",
        )],
    ),
    tool(
        "cancel_reservation",
        "AirlineTools.cancel_reservation",
        ToolKind::Write,
        "Cancel the whole reservation.",
        &[p(
            "reservation_id",
            Ty::Str,
            "The reservation ID, such as 'ZFA04Y'.",
        )],
    ),
    tool(
        "get_reservation_details",
        "AirlineTools.get_reservation_details",
        ToolKind::Read,
        "Get the details of a reservation.",
        &[p(
            "reservation_id",
            Ty::Str,
            "The reservation ID, such as '8JX2WO'.",
        )],
    ),
    tool(
        "get_user_details",
        "AirlineTools.get_user_details",
        ToolKind::Read,
        "Get the details of a user, including their reservations.",
        &[p(
            "user_id",
            Ty::Str,
            "The user ID, such as 'sara_doe_496'.",
        )],
    ),
    tool(
        "list_all_airports",
        "AirlineTools.list_all_airports",
        ToolKind::Read,
        "Returns a list of all available airports.",
        &[],
    ),
    tool(
        "search_direct_flight",
        "AirlineTools.search_direct_flight",
        ToolKind::Read,
        "Search for direct flights between two cities on a specific date.",
        &[
            p("origin", Ty::Str, ORIGIN_DOC),
            p("destination", Ty::Str, DESTINATION_DOC),
            p(
                "date",
                Ty::Str,
                "The date of the flight in the format 'YYYY-MM-DD', such as '2024-01-01'.",
            ),
        ],
    ),
    tool(
        "search_onestop_flight",
        "AirlineTools.search_onestop_flight",
        ToolKind::Read,
        "Search for one-stop flights between two cities on a specific date.",
        &[
            p("origin", Ty::Str, ORIGIN_DOC),
            p("destination", Ty::Str, DESTINATION_DOC),
            p(
                "date",
                Ty::Str,
                "The date of the flight in the format 'YYYY-MM-DD', such as '2024-05-01'.",
            ),
        ],
    ),
    tool(
        "send_certificate",
        "AirlineTools.send_certificate",
        ToolKind::Write,
        "Send a certificate to a user. Be careful!",
        &[
            p(
                "user_id",
                Ty::Str,
                "The ID of the user to book the reservation, such as 'sara_doe_496'.",
            ),
            p("amount", Ty::Int, "The amount of the certificate to send."),
        ],
    ),
    ToolSpec {
        long: "Only transfer if\n -  the user explicitly asks for a human agent\n -  given the policy and the available tools, you cannot solve the user's issue.",
        ..tool(
            "transfer_to_human_agents",
            "AirlineTools.transfer_to_human_agents",
            ToolKind::Generic,
            "Transfer the user to a human agent, with a summary of the user's issue.",
            &[p("summary", Ty::Str, "A summary of the user's issue.")],
        )
    },
    tool(
        "update_reservation_baggages",
        "AirlineTools.update_reservation_baggages",
        ToolKind::Write,
        "Update the baggage information of a reservation.",
        &[
            p(
                "reservation_id",
                Ty::Str,
                "The reservation ID, such as 'ZFA04Y'",
            ),
            p(
                "total_baggages",
                Ty::Int,
                "The updated total number of baggage items included in the reservation.",
            ),
            p(
                "nonfree_baggages",
                Ty::Int,
                "The updated number of non-free baggage items included in the reservation.",
            ),
            p("payment_id", Ty::Str, PAYMENT_ID_DOC),
        ],
    ),
    ToolSpec {
        defs: Some(flight_info_defs),
        ..tool(
            "update_reservation_flights",
            "AirlineTools.update_reservation_flights",
            ToolKind::Write,
            "Update the flight information of a reservation.",
            &[
                p(
                    "reservation_id",
                    Ty::Str,
                    "The reservation ID, such as 'ZFA04Y'.",
                ),
                p(
                    "cabin",
                    Ty::Literal(CABIN),
                    "The cabin class of the reservation",
                ),
                p(
                    "flights",
                    Ty::Raw(flight_infos),
                    "An array of objects containing details about each piece of flight in the ENTIRE new reservation. Even if the a flight segment is not changed, it should still be included in the array.",
                ),
                p("payment_id", Ty::Str, PAYMENT_ID_DOC),
            ],
        )
    },
    ToolSpec {
        defs: Some(passenger_defs),
        ..tool(
            "update_reservation_passengers",
            "AirlineTools.update_reservation_passengers",
            ToolKind::Write,
            "Update the passenger information of a reservation.",
            &[
                p(
                    "reservation_id",
                    Ty::Str,
                    "The reservation ID, such as 'ZFA04Y'.",
                ),
                p("passengers", Ty::Raw(passengers), PASSENGERS_DOC),
            ],
        )
    },
    tool(
        "get_flight_status",
        "AirlineTools.get_flight_status",
        ToolKind::Read,
        "Get the status of a flight.",
        &[
            p("flight_number", Ty::Str, "The flight number."),
            p("date", Ty::Str, "The date of the flight."),
        ],
    ),
];
