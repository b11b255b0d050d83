//! The airline tools against the official implementation's outputs (the
//! expected texts were produced by tau2-bench at the recipe's commit).

use std::sync::OnceLock;

use serde_json::{Value, json};
use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::env::Environment;
use tau2_bench::message::ToolCall;
use tau2_bench::task::Requestor;

const USER: &str = "mei_hernandez_8984";
const RESERVATION: &str = "R9QDGB";

fn domain() -> &'static LoadedDomain {
    static DOMAIN: OnceLock<LoadedDomain> = OnceLock::new();
    DOMAIN.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2");
        LoadedDomain::load(
            &DataDir::new(root, DataVersion::Recipe337326e),
            Domain::Airline,
        )
        .expect("airline data loads")
    })
}

/// Runs a tool call; returns the content and whether it is an error.
fn call(env: &mut Environment, name: &str, arguments: Value) -> (String, bool) {
    let call = ToolCall {
        id: "call_0".into(),
        name: name.into(),
        arguments: arguments.as_object().cloned().expect("object arguments"),
        requestor: Requestor::Assistant,
    };
    let message = env.get_response(&call);
    (message.content.unwrap_or_default(), message.error)
}

fn ok(env: &mut Environment, name: &str, arguments: Value) -> Value {
    let (content, error) = call(env, name, arguments);
    assert!(!error, "{name} failed: {content}");
    serde_json::from_str(&content).expect("JSON result")
}

fn err(env: &mut Environment, name: &str, arguments: Value) -> String {
    let (content, error) = call(env, name, arguments);
    assert!(error, "{name} unexpectedly succeeded: {content}");
    content
}

fn user(env: &Environment) -> Value {
    env.db().expect("agent db")["users"][USER].clone()
}

fn seats(env: &Environment, flight: &str, date: &str, cabin: &str) -> Value {
    env.db().expect("agent db")["flights"][flight]["dates"][date]["available_seats"][cabin].clone()
}

fn reservation(env: &Environment, id: &str) -> Value {
    env.db().expect("agent db")["reservations"][id].clone()
}

fn booking(payments: Value, nonfree: Value) -> Value {
    json!({
        "user_id": USER, "origin": "SEA", "destination": "JFK", "flight_type": "one_way",
        "cabin": "business", "flights": [{"flight_number": "HAT021", "date": "2024-05-20"}],
        "passengers": [{"first_name": "Mei", "last_name": "Hernandez", "dob": "1981-01-11"}],
        "payment_methods": payments, "total_baggages": 0, "nonfree_baggages": nonfree,
        "insurance": "no",
    })
}

#[test]
fn database_and_tools_match_the_official_ones() {
    let env = domain().environment();
    assert_eq!(
        env.db_hash().as_deref(),
        Some("124e39a664b56402bcd09cb8a6a9cece6acb8462337c969799d5658e3250f263")
    );
    assert_eq!(env.user_db(), None);
    let names: Vec<&str> = env.tools().iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "book_reservation",
            "calculate",
            "cancel_reservation",
            "get_reservation_details",
            "get_user_details",
            "list_all_airports",
            "search_direct_flight",
            "search_onestop_flight",
            "send_certificate",
            "transfer_to_human_agents",
            "update_reservation_baggages",
            "update_reservation_flights",
            "update_reservation_passengers",
            "get_flight_status",
        ]
    );
    let passengers = env.tools()[12].openai_schema();
    assert_eq!(
        tau2_bench::py::json::dumps(&passengers),
        r##"{"type": "function", "function": {"name": "update_reservation_passengers", "description": "Update the passenger information of a reservation.", "parameters": {"$defs": {"Passenger": {"properties": {"first_name": {"description": "Passenger's first name", "title": "First Name", "type": "string"}, "last_name": {"description": "Passenger's last name", "title": "Last Name", "type": "string"}, "dob": {"description": "Date of birth in YYYY-MM-DD format", "title": "Dob", "type": "string"}}, "required": ["first_name", "last_name", "dob"], "title": "Passenger", "type": "object"}}, "properties": {"reservation_id": {"description": "The reservation ID, such as 'ZFA04Y'.", "title": "Reservation Id", "type": "string"}, "passengers": {"description": "An array of objects containing details about each passenger.", "items": {"anyOf": [{"$ref": "#/$defs/Passenger"}, {"additionalProperties": true, "type": "object"}]}, "title": "Passengers", "type": "array"}}, "required": ["reservation_id", "passengers"], "title": "parameters", "type": "object"}}}"##
    );
    let booking = env.tools()[0].openai_schema();
    let defs = &booking["function"]["parameters"]["$defs"];
    assert_eq!(defs["Payment"]["properties"]["amount"]["type"], "integer");
    assert_eq!(
        booking["function"]["parameters"]["properties"]["cabin"]["enum"],
        json!(["business", "economy", "basic_economy"])
    );
}

#[test]
fn booking_debits_payments_takes_seats_and_stores_the_reservation() {
    let mut env = domain().environment();
    let before = env.db_hash();
    let (content, error) = call(
        &mut env,
        "book_reservation",
        json!({
            "user_id": USER, "origin": "SEA", "destination": "JFK", "flight_type": "one_way",
            "cabin": "business", "flights": [{"flight_number": "HAT021", "date": "2024-05-20"}],
            "passengers": [
                {"first_name": "Mei", "last_name": "Hernandez", "dob": "1981-01-11"},
                {"first_name": "Zoë", "last_name": "Núñez", "dob": "1990-02-03", "nickname": "z"},
            ],
            "payment_methods": [
                {"payment_id": "gift_card_5309492", "amount": 98},
                {"payment_id": "certificate_7502997", "amount": "200"},
                {"payment_id": "credit_card_2140654", "amount": 336.0},
            ],
            "total_baggages": "3", "nonfree_baggages": 1, "insurance": "yes",
        }),
    );
    assert!(!error);
    assert_eq!(
        content,
        r#"{"reservation_id": "HATHAT", "user_id": "mei_hernandez_8984", "origin": "SEA", "destination": "JFK", "flight_type": "one_way", "cabin": "business", "flights": [{"flight_number": "HAT021", "origin": "SEA", "destination": "JFK", "date": "2024-05-20", "price": 262}], "passengers": [{"first_name": "Mei", "last_name": "Hernandez", "dob": "1981-01-11"}, {"first_name": "Zo\u00eb", "last_name": "N\u00fa\u00f1ez", "dob": "1990-02-03"}], "payment_history": [{"payment_id": "gift_card_5309492", "amount": 98}, {"payment_id": "certificate_7502997", "amount": 200}, {"payment_id": "credit_card_2140654", "amount": 336}], "created_at": "2024-05-15T15:00:00", "total_baggages": 3, "nonfree_baggages": 1, "insurance": "yes", "status": null}"#
    );
    let methods = &user(&env)["payment_methods"];
    assert_eq!(methods["gift_card_5309492"]["amount"], json!(0.0));
    // The certificate is removed whole although only 200 of 250 were used.
    assert!(methods.get("certificate_7502997").is_none());
    assert_eq!(user(&env)["reservations"][4], "HATHAT");
    assert_eq!(seats(&env, "HAT021", "2024-05-20", "business"), json!(12));
    assert_ne!(env.db_hash(), before);
}

#[test]
fn booking_errors_read_as_upstream() {
    let mut env = domain().environment();
    // The price uses the argument as given: a float bag count makes a float total.
    let card = json!([{"payment_id": "credit_card_2140654", "amount": 300}]);
    assert_eq!(
        err(&mut env, "book_reservation", booking(card, json!(1.0))),
        "Error: Payment amount does not add up, total price is 312.0, but paid 300"
    );
    let mut bad = booking(json!("abc"), json!(1));
    bad["origin"] = json!(1);
    bad["flight_type"] = json!("oneway");
    bad["passengers"] = json!([{"first_name": "Mei"}, "x"]);
    bad["total_baggages"] = json!(2.5);
    assert_eq!(
        err(&mut env, "book_reservation", bad),
        "Error: 7 validation errors for Reservation\norigin\n  Input should be a valid string [type=string_type, input_value=1, input_type=int]\n    For further information visit https://errors.pydantic.dev/2.14/v/string_type\nflight_type\n  Input should be 'round_trip' or 'one_way' [type=literal_error, input_value='oneway', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.14/v/literal_error\npassengers.0.last_name\n  Field required [type=missing, input_value={'first_name': 'Mei'}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.14/v/missing\npassengers.0.dob\n  Field required [type=missing, input_value={'first_name': 'Mei'}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.14/v/missing\npassengers.1\n  Input should be a valid dictionary or instance of Passenger [type=model_type, input_value='x', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.14/v/model_type\npayment_history\n  Input should be a valid list [type=list_type, input_value='abc', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.14/v/list_type\ntotal_baggages\n  Input should be a valid integer, got a number with a fractional part [type=int_from_float, input_value=2.5, input_type=float]\n    For further information visit https://errors.pydantic.dev/2.14/v/int_from_float"
    );
    let mut flights = booking(json!([]), json!(0));
    flights["flights"] = json!("ab");
    assert_eq!(
        err(&mut env, "book_reservation", flights),
        "Error: 'str' object has no attribute 'flight_number'"
    );
    // One certificate listed twice: the first use removes it, the second fails.
    let twice = json!([
        {"payment_id": "certificate_7502997", "amount": 1},
        {"payment_id": "certificate_7502997", "amount": 1},
        {"payment_id": "credit_card_2140654", "amount": 260},
    ]);
    assert_eq!(
        err(&mut env, "book_reservation", booking(twice, json!(0))),
        "Error: 'certificate_7502997'"
    );
    assert!(
        user(&env)["payment_methods"]
            .get("certificate_7502997")
            .is_none()
    );
    assert!(reservation(&env, "HATHAT").is_null());
    assert_eq!(seats(&env, "HAT021", "2024-05-20", "business"), json!(14));
}

#[test]
fn environments_do_not_share_writes() {
    let mut first = domain().environment();
    let second = domain().environment();
    let card = json!([{"payment_id": "credit_card_2140654", "amount": 262}]);
    ok(&mut first, "book_reservation", booking(card, json!(0)));
    assert_eq!(seats(&first, "HAT021", "2024-05-20", "business"), json!(13));
    assert_eq!(
        seats(&second, "HAT021", "2024-05-20", "business"),
        json!(14)
    );
    assert!(reservation(&second, "HATHAT").is_null());
    assert_ne!(first.db_hash(), second.db_hash());
    assert_eq!(domain().environment().db_hash(), second.db_hash());
}

#[test]
fn reservation_ids_run_out_after_three_bookings() {
    let mut env = domain().environment();
    let card = json!([{"payment_id": "credit_card_2140654", "amount": 262}]);
    for id in ["HATHAT", "HATHAU", "HATHAV"] {
        let booked = ok(
            &mut env,
            "book_reservation",
            booking(card.clone(), json!(0)),
        );
        assert_eq!(booked["reservation_id"], id);
    }
    assert_eq!(
        err(&mut env, "book_reservation", booking(card, json!(0))),
        "Error: Too many reservations"
    );
    assert_eq!(seats(&env, "HAT021", "2024-05-20", "business"), json!(11));
}

#[test]
fn cancelling_refunds_every_payment_again_and_keeps_the_seats() {
    let mut env = domain().environment();
    let seats_before = seats(&env, "HAT034", "2024-05-28", "economy").clone();
    let once = ok(
        &mut env,
        "cancel_reservation",
        json!({"reservation_id": RESERVATION}),
    );
    assert_eq!(once["status"], "cancelled");
    assert_eq!(
        once["payment_history"],
        json!([
            {"payment_id": "credit_card_6082923", "amount": 1911},
            {"payment_id": "credit_card_6082923", "amount": -1911},
        ])
    );
    let twice = ok(
        &mut env,
        "cancel_reservation",
        json!({"reservation_id": RESERVATION}),
    );
    let amounts: Vec<&Value> = twice["payment_history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["amount"])
        .collect();
    assert_eq!(
        amounts,
        [&json!(1911), &json!(-1911), &json!(-1911), &json!(1911)]
    );
    assert_eq!(seats(&env, "HAT034", "2024-05-28", "economy"), seats_before);
    assert_eq!(
        err(
            &mut env,
            "cancel_reservation",
            json!({"reservation_id": [RESERVATION]})
        ),
        "Error: unhashable type: 'list'"
    );
    assert_eq!(
        err(
            &mut env,
            "cancel_reservation",
            json!({"reservation_id": "NOPE00"})
        ),
        "Error: Reservation NOPE00 not found"
    );
}

#[test]
fn baggage_updates_charge_new_bags_and_store_counts_as_given() {
    let mut env = domain().environment();
    let update = |nonfree: Value, payment: &str| json!({"reservation_id": RESERVATION, "total_baggages": "four", "nonfree_baggages": nonfree, "payment_id": payment});
    assert_eq!(
        err(
            &mut env,
            "update_reservation_baggages",
            update(json!(2), "gift_card_5309492")
        ),
        "Error: Gift card balance is not enough"
    );
    assert_eq!(
        err(
            &mut env,
            "update_reservation_baggages",
            update(json!(2), "certificate_7502997")
        ),
        "Error: Certificate cannot be used to update reservation"
    );
    assert_eq!(
        err(
            &mut env,
            "update_reservation_baggages",
            update(json!(2.3), "credit_card_2140654")
        ),
        "Error: 1 validation error for Payment\namount\n  Input should be a valid integer, got a number with a fractional part [type=int_from_float, input_value=114.99999999999999, input_type=float]\n    For further information visit https://errors.pydantic.dev/2.14/v/int_from_float"
    );
    assert_eq!(
        err(
            &mut env,
            "update_reservation_baggages",
            update(json!("3"), "credit_card_2140654")
        ),
        "Error: unsupported operand type(s) for -: 'str' and 'int'"
    );
    let updated = ok(
        &mut env,
        "update_reservation_baggages",
        update(json!(1), "gift_card_5309492"),
    );
    assert_eq!(updated["total_baggages"], "four");
    assert_eq!(updated["nonfree_baggages"], 1);
    assert_eq!(
        updated["payment_history"][1],
        json!({"payment_id": "gift_card_5309492", "amount": 50})
    );
    assert_eq!(
        user(&env)["payment_methods"]["gift_card_5309492"]["amount"],
        json!(48.0)
    );
    // Fewer bags cost nothing and record no payment.
    let fewer = ok(
        &mut env,
        "update_reservation_baggages",
        update(json!(0), "credit_card_2140654"),
    );
    assert_eq!(fewer["payment_history"].as_array().map(Vec::len), Some(2));
}

#[test]
fn flight_updates_keep_old_prices_reprice_new_segments_and_pay_the_difference() {
    let mut env = domain().environment();
    let flights = |list: Value, cabin: &str, payment: &str| json!({"reservation_id": RESERVATION, "cabin": cabin, "flights": list, "payment_id": payment});
    let kept = json!([
        {"flight_number": "HAT034", "date": "2024-05-28"},
        {"flight_number": "HAT026", "date": "2024-05-28"},
    ]);
    let shorter = ok(
        &mut env,
        "update_reservation_flights",
        flights(kept, "economy", "credit_card_2140654"),
    );
    assert_eq!(shorter["flights"].as_array().map(Vec::len), Some(2));
    assert_eq!(shorter["flights"][1]["price"], 194);
    assert_eq!(
        shorter["payment_history"][1],
        json!({"payment_id": "credit_card_2140654", "amount": -810})
    );
    let seats_before = seats(&env, "HAT034", "2024-05-28", "business").clone();
    let one = json!([{"flight_number": "HAT034", "date": "2024-05-28"}]);
    let business = ok(
        &mut env,
        "update_reservation_flights",
        flights(one, "business", "credit_card_2140654"),
    );
    assert_eq!(business["cabin"], "business");
    assert_eq!(business["flights"][0]["price"], 341);
    assert_eq!(business["payment_history"][2]["amount"], 12);
    // Seats are not updated when flights change (upstream).
    assert_eq!(
        seats(&env, "HAT034", "2024-05-28", "business"),
        seats_before
    );
    let new = json!([{"flight_number": "HAT021", "date": "2024-05-20"}]);
    assert_eq!(
        err(
            &mut env,
            "update_reservation_flights",
            flights(new.clone(), "first", "credit_card_2140654")
        ),
        "Error: 'first'"
    );
    assert_eq!(
        err(
            &mut env,
            "update_reservation_flights",
            flights(new, "business", "certificate_7502997")
        ),
        "Error: Certificate cannot be used to update reservation"
    );
    let landed = json!([{"flight_number": "HAT001", "date": "2024-05-01"}]);
    assert_eq!(
        err(
            &mut env,
            "update_reservation_flights",
            flights(landed, "business", "credit_card_2140654")
        ),
        "Error: Flight HAT001 not available on date 2024-05-01"
    );
}

#[test]
fn passenger_updates_need_the_same_count_and_store_odd_values_as_given() {
    let mut env = domain().environment();
    let update =
        |passengers: Value| json!({"reservation_id": RESERVATION, "passengers": passengers});
    let one = json!([{"first_name": "A", "last_name": "B", "dob": "2000-01-01"}]);
    assert_eq!(
        err(&mut env, "update_reservation_passengers", update(one)),
        "Error: Number of passengers does not match"
    );
    let three = json!([
        {"first_name": "A", "last_name": "B", "dob": "2000-01-01"},
        {"first_name": "C", "last_name": "D", "dob": "2000-01-02"},
        {"x": 1, "dob": "2000-01-03", "last_name": "F", "first_name": "E"},
    ]);
    let updated = ok(&mut env, "update_reservation_passengers", update(three));
    assert_eq!(
        updated["passengers"][2],
        json!({"first_name": "E", "last_name": "F", "dob": "2000-01-03"})
    );
    // Not a list of dicts: kept as given when its length matches.
    let odd = ok(
        &mut env,
        "update_reservation_passengers",
        update(json!("abc")),
    );
    assert_eq!(odd["passengers"], "abc");
    assert_eq!(reservation(&env, RESERVATION)["passengers"], "abc");
    assert_eq!(
        err(
            &mut env,
            "update_reservation_passengers",
            update(json!([{"first_name": "A", "last_name": 2}]))
        ),
        "Error: 2 validation errors for Passenger\nlast_name\n  Input should be a valid string [type=string_type, input_value=2, input_type=int]\n    For further information visit https://errors.pydantic.dev/2.14/v/string_type\ndob\n  Field required [type=missing, input_value={'first_name': 'A', 'last_name': 2}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.14/v/missing"
    );
}

#[test]
fn certificates_take_the_next_free_id_until_three_are_used() {
    let mut env = domain().environment();
    let mut send = |amount: Value| {
        call(
            &mut env,
            "send_certificate",
            json!({"user_id": USER, "amount": amount}),
        )
    };
    assert_eq!(
        send(json!(150)),
        (
            "Certificate certificate_3221322 added to user mei_hernandez_8984 with amount 150."
                .into(),
            false
        )
    );
    assert_eq!(
        send(json!("20")),
        (
            "Certificate certificate_3221323 added to user mei_hernandez_8984 with amount 20."
                .into(),
            false
        )
    );
    assert_eq!(
        send(json!("abc")),
        ("Error: 1 validation error for Certificate\namount\n  Input should be a valid number, unable to parse string as a number [type=float_parsing, input_value='abc', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.14/v/float_parsing".into(), true)
    );
    assert_eq!(
        send(json!(true)),
        (
            "Certificate certificate_3221324 added to user mei_hernandez_8984 with amount True."
                .into(),
            false
        )
    );
    assert_eq!(
        send(json!(5)),
        ("Error: Too many certificates".into(), true)
    );
    let methods = &user(&env)["payment_methods"];
    assert_eq!(
        methods["certificate_3221323"],
        json!({"source": "certificate", "id": "certificate_3221323", "amount": 20.0})
    );
    assert_eq!(methods["certificate_3221324"]["amount"], json!(1.0));
}

#[test]
fn searches_and_reads_match_upstream() {
    let mut env = domain().environment();
    let direct = ok(
        &mut env,
        "search_direct_flight",
        json!({"origin": "SEA", "destination": "JFK", "date": "2024-05-20"}),
    );
    let numbers: Vec<&Value> = direct
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| &f["flight_number"])
        .collect();
    assert_eq!(numbers, ["HAT021", "HAT089", "HAT100", "HAT276"]);
    assert!(direct[0]["date"].is_null());
    // A leg arriving "+1" connects on the next day...
    let onestop = ok(
        &mut env,
        "search_onestop_flight",
        json!({"origin": "SEA", "destination": "MIA", "date": "2024-05-20"}),
    );
    assert_eq!(onestop[0][0]["flight_number"], "HAT021");
    assert_eq!(onestop[0][1]["date"], "2024-05-21");
    // ...but not from the 30th: "2024-05-31" does not exist.
    let last_day = ok(
        &mut env,
        "search_onestop_flight",
        json!({"origin": "SEA", "destination": "MIA", "date": "2024-05-30"}),
    );
    let pairs = last_day.as_array().into_iter().flatten();
    assert!(pairs.clone().count() > 0);
    assert!(pairs.clone().all(|p| p[0]["flight_number"] != "HAT021"));
    assert_eq!(
        call(
            &mut env,
            "get_flight_status",
            json!({"flight_number": "HAT021", "date": "2024-05-03"})
        ),
        ("landed".into(), false)
    );
    assert_eq!(
        err(&mut env, "get_user_details", json!({})),
        "Error: AirlineTools.get_user_details() missing 1 required positional argument: 'user_id'"
    );
    assert_eq!(
        err(
            &mut env,
            "get_user_details",
            json!({"user_id": "x", "id": 1})
        ),
        "Error: AirlineTools.get_user_details() got an unexpected keyword argument 'id'"
    );
    assert_eq!(
        err(&mut env, "get_user_details", json!({"user_id": 2.5})),
        "Error: User 2.5 not found"
    );
    let airports = ok(&mut env, "list_all_airports", json!({}));
    assert_eq!(airports[19], json!({"iata": "LGA", "city": "LaGuardia"}));
}

#[test]
fn calculate_follows_python_eval() {
    let mut env = domain().environment();
    let mut calc = |e: Value| call(&mut env, "calculate", json!({"expression": e}));
    assert_eq!(
        calc(json!("(1200 - 800) * 2 / 3")),
        ("266.67".into(), false)
    );
    assert_eq!(calc(json!("1/0")), ("Error: division by zero".into(), true));
    assert_eq!(calc(json!("2 ** 0.5")), ("1.41".into(), false));
    assert_eq!(calc(json!("0.125")), ("0.12".into(), false));
    assert_eq!(
        calc(json!("3 x 4")),
        ("Error: Invalid characters in expression".into(), true)
    );
    assert_eq!(
        calc(json!("(2 3)")),
        (
            "Error: invalid syntax. Perhaps you forgot a comma? (<string>, line 1)".into(),
            true
        )
    );
    assert_eq!(
        calc(json!(5)),
        ("Error: 'int' object is not iterable".into(), true)
    );
}
