//! The telecom domain against the official implementation's outputs (texts
//! and hashes recorded from tau2 at the recipe's commit).

use std::sync::OnceLock;

use serde_json::{Value, json};
use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::env::Environment;
use tau2_bench::message::ToolCall;
use tau2_bench::task::{EnvAssertion, EnvFunctionCall, Requestor};
use tau2_bench::tool::ToolResult;

use Requestor::{Assistant as Agent, User};

const INITIAL_AGENT_HASH: &str = "304cf5ef059852e117ea801ab9a5efc24c9713ec887679dc2e30acceb4b6742d";
const INITIAL_USER_HASH: &str = "e1f3a8637388808221228ff3f87294444e6b64caf721f5eb243a85d0a9380b28";
const OVERDUE_TASK: &str = "[service_issue]overdue_bill_suspension[PERSONA:Easy]";
const EXCEEDED_TASK: &str = "[mobile_data_issue]data_usage_exceeded[PERSONA:Easy]";
const BAD_VPN_TASK: &str = "[mobile_data_issue]bad_vpn[PERSONA:None]";
const BAR_5G: &str = "Status Bar: 📶⁴ Excellent | 5G | 📱 Data Enabled | 🔋 80%";
const BAR_GOOD: &str = "Status Bar: 📶³ Good | 5G | 📱 Data Enabled | 🔋 80%";

fn domain() -> &'static LoadedDomain {
    static DOMAIN: OnceLock<LoadedDomain> = OnceLock::new();
    DOMAIN.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2");
        LoadedDomain::load(
            &DataDir::new(root, DataVersion::Recipe337326e),
            Domain::Telecom,
        )
        .expect("telecom data loads")
    })
}

fn fresh() -> Environment {
    domain().environment()
}

fn task_env(id: &str) -> Environment {
    let task = domain().tasks.get(id).expect("task exists");
    let mut env = fresh();
    env.set_state(task.initial_state.as_ref())
        .expect("initial state applies");
    env
}

/// A tool call through `get_response`: (content, error).
fn call(env: &mut Environment, side: Requestor, name: &str, args: Value) -> (String, bool) {
    let msg = env.get_response(&ToolCall {
        id: "call_0".into(),
        name: name.into(),
        arguments: args.as_object().cloned().unwrap_or_default(),
        requestor: side,
    });
    (msg.content.unwrap_or_default(), msg.error)
}

fn ok(env: &mut Environment, side: Requestor, name: &str, args: Value) -> String {
    let (content, error) = call(env, side, name, args);
    assert!(!error, "{name} failed: {content}");
    content
}

fn err(env: &mut Environment, side: Requestor, name: &str, args: Value) -> String {
    let (content, error) = call(env, side, name, args);
    assert!(error, "{name} succeeded: {content}");
    content
}

fn assertion(env: &mut Environment, side: Requestor, name: &str, args: Value) -> bool {
    env.run_env_assertion(
        &EnvAssertion {
            env_type: side,
            func_name: name.into(),
            arguments: args.as_object().cloned().unwrap_or_default(),
            assert_value: true,
            message: None,
        },
        false,
    )
    .expect("assertion runs")
}

fn function(env: &mut Environment, side: Requestor, name: &str, args: Value) -> ToolResult {
    env.run_env_function_call(&EnvFunctionCall {
        env_type: side,
        func_name: name.into(),
        arguments: args.as_object().cloned().unwrap_or_default(),
    })
    .expect("function runs")
}

fn agent_db(env: &Environment) -> Value {
    env.db().expect("agent db").into_owned()
}

fn user_db(env: &Environment) -> Value {
    env.user_db().expect("user db").into_owned()
}

fn line(env: &Environment, id: &str) -> Value {
    agent_db(env)["lines"]
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["line_id"] == id))
        .cloned()
        .unwrap_or_default()
}

fn bill(env: &Environment, id: &str) -> Value {
    agent_db(env)["bills"]
        .as_array()
        .and_then(|bills| bills.iter().find(|b| b["bill_id"] == id))
        .cloned()
        .unwrap_or_default()
}

#[test]
fn loads_databases_tools_and_policy_as_upstream() {
    let env = fresh();
    assert_eq!(env.db_hash().as_deref(), Some(INITIAL_AGENT_HASH));
    assert_eq!(env.user_db_hash().as_deref(), Some(INITIAL_USER_HASH));
    assert_eq!(env.tools().len(), 13);
    assert_eq!(env.user_tools().map(<[_]>::len), Some(30));
    assert!(env.policy.starts_with("<main_policy>\n"));
    assert!(
        env.policy
            .contains("\n</main_policy>\n<tech_support_policy>\n")
    );
    assert!(env.policy.ends_with("\n</tech_support_policy>"));
    // Dates print as str(date), datetimes as str(datetime), dict keys in file order.
    assert_eq!(
        agent_db(&env)["customers"][0]["created_at"],
        "2025-01-15 10:30:00"
    );
    assert_eq!(line(&env, "L1001")["contract_end_date"], "2026-12-31");
    let db = user_db(&env);
    let apps: Vec<&String> = db["device"]["app_statuses"]
        .as_object()
        .map(|a| a.keys().collect())
        .unwrap_or_default();
    assert_eq!(apps, ["messaging", "browser"]);
}

#[test]
fn tool_schemas_match_upstream_text() {
    let env = fresh();
    let user = env.user_tools().unwrap_or_default();
    let apn = user
        .iter()
        .find(|t| t.name == "set_apn_settings")
        .expect("tool");
    assert_eq!(
        tau2_bench::py::json::dumps(&apn.openai_schema()),
        r##"{"type": "function", "function": {"name": "set_apn_settings", "description": "Sets the APN settings for the phone.", "parameters": {"$defs": {"APNNames": {"enum": ["internet", "broken"], "title": "APNNames", "type": "string"}, "APNSettings": {"additionalProperties": false, "description": "Represents the configuration for a single Access Point Name (APN).", "properties": {"apn_name": {"$ref": "#/$defs/APNNames", "default": "internet", "description": "The name identifier for the APN connection."}, "reset_at_reboot": {"default": false, "description": "Whether the APN settings will be reset at the next reboot.", "title": "Reset At Reboot", "type": "boolean"}, "mms_apn": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "mms", "description": "Specific APN name used for MMS traffic, if different from general data.", "title": "Mms Apn"}, "mmsc_url": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "http://mms.carrier.com/mms/wapenc", "description": "The URL of the Multimedia Messaging Service Center (MMSC). Crucial for MMS.", "title": "Mmsc Url"}, "mms_proxy": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "description": "The proxy server address required for MMS traffic on some networks.", "title": "Mms Proxy"}, "mms_port": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null, "description": "The proxy server port required for MMS traffic on some networks.", "title": "Mms Port"}}, "title": "APNSettings", "type": "object"}}, "properties": {"apn_settings": {"anyOf": [{"$ref": "#/$defs/APNSettings"}, {"additionalProperties": true, "type": "object"}], "title": "Apn Settings"}}, "required": ["apn_settings"], "title": "parameters", "type": "object"}}}"##
    );
    let bills = env
        .tools()
        .iter()
        .find(|t| t.name == "get_bills_for_customer")
        .expect("tool");
    assert_eq!(
        tau2_bench::py::json::dumps(&bills.openai_schema()["function"]["parameters"]),
        r#"{"properties": {"customer_id": {"description": "ID of the customer.", "title": "Customer Id", "type": "string"}, "limit": {"default": 12, "description": "Maximum number of bills to return.", "title": "Limit", "type": "integer"}}, "required": ["customer_id"], "title": "parameters", "type": "object"}"#
    );
}

#[test]
fn suspend_and_resume_line() {
    let mut env = fresh();
    let args = json!({"customer_id": "C1001", "line_id": "L1002", "reason": "travel"});
    let out = ok(&mut env, Agent, "suspend_line", args.clone());
    assert_eq!(
        out,
        r#"{"message": "Line suspended successfully. $5/month holding fee will apply.", "line": {"line_id": "L1002", "phone_number": "555-123-2002", "status": "Suspended", "plan_id": "P1002", "device_id": "D1002", "data_used_gb": 8.7, "data_refueling_gb": 0.0, "roaming_enabled": true, "contract_end_date": "2026-12-31", "last_plan_change_date": "2024-12-15", "last_sim_replacement_date": "2025-01-20", "suspension_start_date": "2025-02-25"}}"#
    );
    assert_eq!(
        env.db_hash().as_deref(),
        Some("1b80dccbab5a91a324e5fd2e1ac65e2b8a35c42fed2a545d3ddb7ec5d1405a1b")
    );
    assert_eq!(
        err(&mut env, Agent, "suspend_line", args),
        "Error: Line must be active to suspend"
    );
    let resume = json!({"customer_id": "C1001", "line_id": "L1002"});
    let out = ok(&mut env, Agent, "resume_line", resume.clone());
    assert!(
        out.starts_with(r#"{"message": "Line resumed successfully", "line": {"line_id": "L1002""#)
    );
    assert_eq!(line(&env, "L1002")["status"], "Active");
    assert_eq!(line(&env, "L1002")["suspension_start_date"], Value::Null);
    assert_eq!(
        err(&mut env, Agent, "resume_line", resume),
        "Error: Line must be suspended to resume"
    );
    assert_eq!(
        err(
            &mut env,
            Agent,
            "resume_line",
            json!({"customer_id": "C1001", "line_id": "L1004"})
        ),
        "Error: Line L1004 not found for customer C1001"
    );
    assert_eq!(
        err(
            &mut env,
            Agent,
            "resume_line",
            json!({"customer_id": "C9", "line_id": "L1004"})
        ),
        "Error: Customer with ID C9 not found"
    );
    assert_eq!(
        err(
            &mut env,
            Agent,
            "resume_line",
            json!({"customer_id": "C1001"})
        ),
        "Error: TelecomTools.resume_line() missing 1 required positional argument: 'line_id'"
    );
}

#[test]
fn refuel_data_charges_the_draft_bill() {
    let mut env = fresh();
    let refuel = |gb: Value| json!({"customer_id": "C1001", "line_id": "L1002", "gb_amount": gb});
    assert_eq!(
        ok(&mut env, Agent, "refuel_data", refuel(json!(2.5))),
        r#"{"message": "Successfully added 2.5 GB of data for line L1002 for $5.00", "new_data_refueling_gb": "2.5", "charge": "5.0"}"#
    );
    assert_eq!(
        env.db_hash().as_deref(),
        Some("114188f00063239387451634ddfac20d23e6c94d7a8798c69580f7f04fe3420a")
    );
    assert_eq!(line(&env, "L1002")["data_refueling_gb"], json!(2.5));
    let draft = bill(&env, "B1003");
    assert_eq!(draft["total_due"], json!(5.0));
    assert_eq!(
        draft["line_items"],
        json!([{"description": "Data refueling: 2.5 GB at $2.0/GB", "amount": 5.0, "date": "2025-02-25", "item_type": "Charge"}])
    );
    assert_eq!(
        ok(
            &mut env,
            Agent,
            "get_data_usage",
            json!({"customer_id": "C1001", "line_id": "L1002"})
        ),
        r#"{"line_id": "L1002", "data_used_gb": "8.7", "data_limit_gb": "15.0", "data_refueling_gb": "2.5", "cycle_end_date": "2025-02-28"}"#
    );
    assert_eq!(
        err(&mut env, Agent, "refuel_data", refuel(json!(0))),
        "Error: Refuel amount must be positive"
    );
    assert_eq!(
        err(&mut env, Agent, "refuel_data", refuel(json!("1"))),
        "Error: '<=' not supported between instances of 'str' and 'int'"
    );
    // An int amount prints as given but accumulates as a float.
    let out = ok(&mut env, Agent, "refuel_data", refuel(json!(1)));
    assert!(out.contains("added 1 GB") && out.contains(r#""new_data_refueling_gb": "3.5""#));
}

#[test]
fn refuel_without_a_draft_bill_creates_one() {
    let mut env = fresh();
    let args = json!({"customer_id": "C1002", "line_id": "L1004", "gb_amount": 10});
    assert_eq!(
        ok(&mut env, Agent, "refuel_data", args),
        r#"{"message": "Successfully added 10 GB of data for line L1004 for $1.00", "new_data_refueling_gb": "10.0", "charge": "1.0"}"#
    );
    let customer = &agent_db(&env)["customers"][1];
    let new_id = customer["bill_ids"][2]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(new_id.len() == 9 && new_id.starts_with('B'), "{new_id}");
    assert!(
        new_id[1..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let draft = bill(&env, &new_id);
    assert_eq!(
        (
            &draft["period_start"],
            &draft["period_end"],
            &draft["due_date"]
        ),
        (
            &json!("2025-03-01"),
            &json!("2025-03-31"),
            &json!("2025-03-15")
        )
    );
    assert_eq!(
        (&draft["status"], &draft["total_due"]),
        (&json!("Draft"), &json!(1.0))
    );
}

#[test]
fn roaming_and_read_tool_errors() {
    let mut env = fresh();
    let l1001 = json!({"customer_id": "C1001", "line_id": "L1001"});
    assert_eq!(
        ok(&mut env, Agent, "enable_roaming", l1001.clone()),
        "Roaming enabled successfully"
    );
    assert_eq!(
        ok(&mut env, Agent, "enable_roaming", l1001.clone()),
        "Roaming was already enabled"
    );
    assert_eq!(
        ok(&mut env, Agent, "disable_roaming", l1001.clone()),
        "Roaming disabled successfully"
    );
    assert_eq!(
        ok(&mut env, Agent, "disable_roaming", l1001),
        "Roaming was already disabled"
    );
    assert_eq!(
        err(&mut env, Agent, "get_details_by_id", json!({"id": "X1"})),
        "Error: Unknown ID format or type: X1"
    );
    assert_eq!(
        err(&mut env, Agent, "get_details_by_id", json!({"id": 7})),
        "Error: 'int' object has no attribute 'startswith'"
    );
    assert_eq!(
        err(
            &mut env,
            Agent,
            "get_customer_by_name",
            json!({"full_name": null, "dob": "x"})
        ),
        "Error: 'NoneType' object has no attribute 'lower'"
    );
    assert_eq!(
        err(
            &mut env,
            Agent,
            "get_bills_for_customer",
            json!({"customer_id": "C1001", "limit": "2"})
        ),
        "Error: slice indices must be integers or None or have an __index__ method"
    );
    let bills = ok(
        &mut env,
        Agent,
        "get_bills_for_customer",
        json!({"customer_id": "C1001", "limit": -1}),
    );
    let ids: Vec<Value> = serde_json::from_str::<Vec<Value>>(&bills)
        .unwrap_or_default()
        .iter()
        .map(|b| b["bill_id"].clone())
        .collect();
    assert_eq!(ids, [json!("B1003"), json!("B1002")]);
    let found = ok(
        &mut env,
        Agent,
        "get_customer_by_name",
        json!({"full_name": "JOHN smith", "dob": "1985-06-15"}),
    );
    assert!(found.starts_with(r#"[{"customer_id": "C1001""#));
    assert_eq!(
        err(
            &mut env,
            Agent,
            "get_customer_by_phone",
            json!({"phone_number": "555"})
        ),
        "Error: Customer with phone number 555 not found"
    );
}

#[test]
fn payment_request_flow_syncs_both_databases() {
    let mut env = task_env(OVERDUE_TASK);
    assert!(!assertion(
        &mut env,
        Agent,
        "assert_no_overdue_bill",
        json!({"overdue_bill_id": "B1234321"})
    ));
    assert!(!assertion(
        &mut env,
        User,
        "assert_service_status",
        json!({"expected_status": "connected"})
    ));
    assert_eq!(
        ok(&mut env, User, "check_payment_request", json!({})),
        "No payment request has been made."
    );
    assert_eq!(
        ok(
            &mut env,
            Agent,
            "send_payment_request",
            json!({"customer_id": "C1001", "bill_id": "B1234321"})
        ),
        "Payment request sent to the customer for bill B1234321"
    );
    assert_eq!(
        err(
            &mut env,
            Agent,
            "send_payment_request",
            json!({"customer_id": "C1001", "bill_id": "B1002"})
        ),
        "Error: A bill is already awaiting payment for this customer"
    );
    assert_eq!(
        ok(&mut env, User, "check_payment_request", json!({})),
        "You have a payment request for bill B1234321 of 65.0 USD."
    );
    assert_eq!(
        ok(&mut env, User, "make_payment", json!({})),
        "Payment of 65.0 USD has been made for bill B1234321."
    );
    assert_eq!(bill(&env, "B1234321")["status"], "Paid");
    assert_eq!(
        user_db(&env)["surroundings"]["payment_request"],
        Value::Null
    );
    assert_eq!(
        ok(&mut env, User, "make_payment", json!({})),
        "You do not have a payment request."
    );
    ok(
        &mut env,
        Agent,
        "resume_line",
        json!({"customer_id": "C1001", "line_id": "L1002"}),
    );
    assert_eq!(user_db(&env)["surroundings"]["line_active"], true);
    ok(&mut env, User, "reboot_device", json!({}));
    assert!(assertion(
        &mut env,
        Agent,
        "assert_no_overdue_bill",
        json!({"overdue_bill_id": "B1234321"})
    ));
    assert!(assertion(
        &mut env,
        User,
        "assert_service_status",
        json!({"expected_status": "connected"})
    ));
}

#[test]
fn refuelling_fixes_exceeded_data_usage() {
    let mut env = task_env(EXCEEDED_TASK);
    assert_eq!(
        user_db(&env)["surroundings"]["mobile_data_usage_exceeded"],
        true
    );
    assert_eq!(line(&env, "L1002")["data_used_gb"], json!(15.1));
    assert!(!assertion(
        &mut env,
        User,
        "assert_mobile_data_status",
        json!({"expected_status": true})
    ));
    assert_eq!(
        ok(&mut env, User, "run_speed_test", json!({})),
        "Speed test failed: No Connection."
    );
    ok(
        &mut env,
        Agent,
        "refuel_data",
        json!({"customer_id": "C1001", "line_id": "L1002", "gb_amount": 2.0}),
    );
    assert_eq!(
        user_db(&env)["surroundings"]["mobile_data_usage_exceeded"],
        false
    );
    let refuelled = json!({"customer_id": "C1001", "line_id": "L1002", "expected_amount": 2.0});
    assert!(assertion(
        &mut env,
        Agent,
        "assert_data_refueling_amount",
        refuelled
    ));
    assert!(assertion(
        &mut env,
        User,
        "assert_mobile_data_status",
        json!({"expected_status": true})
    ));
    assert!(assertion(
        &mut env,
        User,
        "assert_internet_speed",
        json!({"expected_speed": 200, "expected_desc": "excellent"})
    ));
}

#[test]
fn airplane_mode_data_and_speed_test() {
    let mut env = fresh();
    assert_eq!(
        ok(&mut env, User, "toggle_airplane_mode", json!({})),
        "Airplane Mode is now ON.\nStatus Bar: ✈️ Airplane Mode | 🔋 80%"
    );
    assert_eq!(
        ok(&mut env, User, "toggle_wifi", json!({})),
        "Cannot change Wi-Fi settings while Airplane Mode is ON.\nStatus Bar: ✈️ Airplane Mode | 🔋 80%"
    );
    assert_eq!(
        ok(&mut env, User, "check_network_status", json!({})),
        "Airplane Mode: ON\nSIM Card Status: active\nCellular Connection: no_service\nCellular Signal: none\nCellular Network Type: none\nMobile Data Enabled: Yes\nData Roaming Enabled: No\nWi-Fi Radio: OFF\nWi-Fi Connected: No"
    );
    assert_eq!(
        ok(&mut env, User, "toggle_airplane_mode", json!({})),
        format!("Airplane Mode is now OFF.\n{BAR_5G}")
    );
    assert_eq!(
        ok(&mut env, User, "toggle_data", json!({})),
        "Mobile Data is now OFF.\nStatus Bar: 📶⁴ Excellent | 5G | 📵 Data Disabled | 🔋 80%"
    );
    assert_eq!(
        ok(&mut env, User, "run_speed_test", json!({})),
        "Speed test failed: No Connection."
    );
    ok(&mut env, User, "toggle_data", json!({}));
    assert_eq!(
        ok(&mut env, User, "toggle_data_saver_mode", json!({})),
        "Data Saver Mode is now ON.\nStatus Bar: 📶⁴ Excellent | 5G | 📱 Data Enabled | 🔽 Data Saver | 🔋 80%"
    );
    assert_eq!(
        ok(&mut env, User, "run_speed_test", json!({})),
        "Speed Test Result: 55.00 Mbps (Good). Connection is good for most activities, including HD streaming."
    );
    assert!(
        ok(&mut env, User, "toggle_roaming", json!({})).starts_with("Data Roaming is now ON.\n")
    );
    assert!(
        ok(&mut env, User, "toggle_wifi_calling", json!({}))
            .starts_with("Wi-Fi Calling is now ON.\n")
    );
    assert_eq!(
        ok(&mut env, User, "check_wifi_calling_status", json!({})),
        "Wi-Fi Calling is currently turned ON."
    );
}

#[test]
fn network_mode_preference_keeps_upstream_quirks() {
    let mut env = fresh();
    assert_eq!(
        ok(
            &mut env,
            User,
            "set_network_mode_preference",
            json!({"mode": "3g_only"})
        ),
        "Preferred Network Mode set to: 3g_only\nStatus Bar: 📶² Fair | 3G | 📱 Data Enabled | 🔋 80%"
    );
    assert_eq!(
        ok(
            &mut env,
            User,
            "set_network_mode_preference",
            json!({"mode": "5g"})
        ),
        "Failed to set network mode: '5g' is not a valid option. Please use one of: 4g_5g_preferred, 4g_only, 3g_only, 2g_only\nStatus Bar: 📶² Fair | 3G | 📱 Data Enabled | 🔋 80%"
    );
    // None is stored as given (the network search falls back to 4G) yet reported as invalid.
    assert!(
        ok(
            &mut env,
            User,
            "set_network_mode_preference",
            json!({"mode": null})
        )
        .ends_with("Status Bar: 📶³ Good | 4G | 📱 Data Enabled | 🔋 80%")
    );
    assert_eq!(
        err(&mut env, User, "check_network_mode_preference", json!({})),
        "Error: 'NoneType' object has no attribute 'value'"
    );
    assert_eq!(
        err(
            &mut env,
            User,
            "set_network_mode_preference",
            json!({"mode": 2})
        ),
        "Error: 'int' object has no attribute 'value'"
    );
    assert_eq!(user_db(&env)["device"]["network_mode_preference"], json!(2));
}

#[test]
fn apn_settings_validation_reset_and_corruption() {
    let mut env = fresh();
    let broken = json!({"apn_settings": {"apn_name": "broken", "mms_port": "8080"}});
    assert_eq!(
        ok(&mut env, User, "set_apn_settings", broken),
        "APN settings set to: broken\nStatus Bar: 📵 No Signal | 📵 Data Disabled | 🔋 80%"
    );
    assert_eq!(
        env.user_db_hash().as_deref(),
        Some("39a432c85c4d54723e3948708e5ce4d5d97b46ef00838d6c4077c8e2b680e3b4")
    );
    assert_eq!(
        user_db(&env)["device"]["active_apn_settings"]["mms_port"],
        json!(8080)
    );
    assert_eq!(
        ok(&mut env, User, "reset_apn_settings", json!({})),
        "APN settings will reset at reboot.\nStatus Bar: 📵 No Signal | 📵 Data Disabled | 🔋 80%"
    );
    assert_eq!(
        ok(&mut env, User, "reboot_device", json!({})),
        format!("Resetting APN settings...\nRestarting network services...\n{BAR_5G}")
    );
    assert_eq!(
        err(
            &mut env,
            User,
            "set_apn_settings",
            json!({"apn_settings": {"apn_name": "INTERNET", "zz": 1}})
        ),
        "Error: 2 validation errors for APNSettings\napn_name\n  Input should be 'internet' or 'broken' [type=enum, input_value='INTERNET', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.14/v/enum\nzz\n  Extra inputs are not permitted [type=extra_forbidden, input_value=1, input_type=int]\n    For further information visit https://errors.pydantic.dev/2.14/v/extra_forbidden"
    );
    // A non-dict is stored as given; later network searches fail after their changes.
    assert_eq!(
        err(
            &mut env,
            User,
            "set_apn_settings",
            json!({"apn_settings": "internet"})
        ),
        "Error: 'str' object has no attribute 'apn_name'"
    );
    assert_eq!(
        err(&mut env, User, "toggle_data", json!({})),
        "Error: 'str' object has no attribute 'apn_name'"
    );
    assert_eq!(user_db(&env)["device"]["data_enabled"], false);
    assert_eq!(
        err(&mut env, User, "check_apn_settings", json!({})),
        "Error: 'str' object has no attribute 'model_copy'"
    );
}

#[test]
fn app_permissions() {
    let mut env = fresh();
    assert_eq!(
        ok(
            &mut env,
            User,
            "grant_app_permission",
            json!({"app_name": "browser", "permission": "SMS"})
        ),
        format!("Success. Permission 'sms' granted to app 'browser'.\n{BAR_GOOD}")
    );
    assert_eq!(
        env.user_db_hash().as_deref(),
        Some("98d7f923cce663b1ca211ae885f2faa25829ad556c2dbca0c6d3973ff3fa3df8")
    );
    assert_eq!(
        ok(
            &mut env,
            User,
            "grant_app_permission",
            json!({"app_name": "browser", "permission": "camera"})
        ),
        format!(
            "Error. Permission 'camera' not tracked for app 'browser', available permissions: ['sms', 'storage', 'phone', 'network']\n{BAR_GOOD}"
        )
    );
    assert_eq!(
        ok(
            &mut env,
            User,
            "grant_app_permission",
            json!({"app_name": "camera", "permission": "sms"})
        ),
        format!("Error. App 'camera' not found. Cannot grant permission.\n{BAR_GOOD}")
    );
    assert_eq!(
        ok(
            &mut env,
            User,
            "check_app_status",
            json!({"app_name": "browser"})
        ),
        "Status for App: browser\n - Permissions Granted:\n   - sms\n   - storage\n   - network"
    );
    assert_eq!(
        ok(
            &mut env,
            User,
            "check_app_permissions",
            json!({"app_name": "messaging"})
        ),
        "App 'messaging' has permission for: sms, storage, phone."
    );
    assert_eq!(
        err(
            &mut env,
            User,
            "grant_app_permission",
            json!({"app_name": ["x"], "permission": "sms"})
        ),
        "Error: unhashable type: 'list'"
    );
    assert_eq!(
        err(
            &mut env,
            User,
            "grant_app_permission",
            json!({"app_name": "browser", "permission": 3})
        ),
        "Error: 'int' object has no attribute 'lower'"
    );
    assert_eq!(
        err(
            &mut env,
            User,
            "check_app_status",
            json!({"app_name": "browser", "x": 1})
        ),
        "Error: TelecomUserTools.check_app_status() got an unexpected keyword argument 'x'"
    );
    assert_eq!(
        ok(&mut env, User, "can_send_mms", json!({})),
        "Your messaging app can send MMS messages."
    );
    function(
        &mut env,
        User,
        "remove_app_permission",
        json!({"app_name": "messaging", "permission": "storage"}),
    );
    assert_eq!(
        ok(&mut env, User, "can_send_mms", json!({})),
        "Your messaging app cannot send MMS messages."
    );
}

#[test]
fn vpn_sim_and_wifi() {
    let mut env = fresh();
    assert_eq!(
        ok(&mut env, User, "connect_vpn", json!({})),
        "VPN connected successfully.\nStatus Bar: 📶³ Good | 5G | 📱 Data Enabled | 🔒 VPN Connected | 🔋 80%"
    );
    assert_eq!(
        ok(&mut env, User, "connect_vpn", json!({})),
        "VPN already connected."
    );
    assert_eq!(
        ok(&mut env, User, "disconnect_vpn", json!({})),
        format!("VPN disconnected successfully.\n{BAR_GOOD}")
    );
    assert_eq!(
        ok(&mut env, User, "disconnect_vpn", json!({})),
        format!("No active VPN connection to disconnect.\n{BAR_GOOD}")
    );
    assert_eq!(
        ok(&mut env, User, "check_vpn_status", json!({})),
        "VPN is turned OFF."
    );
    function(&mut env, User, "unseat_sim_card", json!({}));
    assert_eq!(
        ok(&mut env, User, "check_sim_status", json!({})),
        "No SIM card detected in the phone."
    );
    assert_eq!(
        ok(&mut env, User, "reseat_sim_card", json!({})),
        format!("SIM card re-seated successfully.\n{BAR_5G}")
    );
    assert_eq!(
        ok(&mut env, User, "toggle_wifi", json!({})),
        format!("Wi-Fi is now ON.\n{BAR_5G}")
    );
    assert_eq!(
        ok(&mut env, User, "check_wifi_status", json!({})),
        "Wi-Fi is ON but not connected to any network."
    );
}

#[test]
fn break_vpn_slows_data_until_disconnected() {
    let mut env = task_env(BAD_VPN_TASK);
    let status = ok(&mut env, User, "check_vpn_status", json!({}));
    assert_eq!(
        status,
        "VPN is ON and connected. Details: {'server_address': '192.168.1.1', 'protocol': 'OpenVPN', 'server_performance': <PerformanceLevel.POOR: 'poor'>}"
    );
    assert!(!assertion(
        &mut env,
        User,
        "assert_internet_speed",
        json!({"expected_speed": 200, "expected_desc": "excellent"})
    ));
    // Upstream quirk: break_vpn mutated the shared default VPN details, so a
    // later connection in this episode is poor too...
    ok(&mut env, User, "disconnect_vpn", json!({}));
    ok(&mut env, User, "connect_vpn", json!({}));
    let performance = |e: &tau2_bench::env::Environment| {
        e.user_db()
            .map(|db| db["device"]["vpn_details"]["server_performance"].clone())
    };
    assert_eq!(performance(&env), Some(json!("poor")));
    // ...but not in another episode (upstream: any later one in the process).
    let mut other = fresh();
    ok(&mut other, User, "connect_vpn", json!({}));
    assert_eq!(performance(&other), Some(json!("excellent")));
    ok(&mut env, User, "disconnect_vpn", json!({}));
    assert!(assertion(
        &mut env,
        User,
        "assert_internet_speed",
        json!({"expected_speed": 200, "expected_desc": "excellent"})
    ));
}

#[test]
fn helper_functions_are_callable_by_name() {
    let mut env = fresh();
    let out = function(
        &mut env,
        User,
        "set_wifi_calling",
        json!({"enabled": true, "mms_over_wifi": true}),
    );
    assert_eq!(
        out,
        ToolResult::Text("Wi-Fi Calling is now ON.\nMMS over Wi-Fi is now ON.".into())
    );
    assert!(!assertion(
        &mut env,
        User,
        "assert_can_send_mms",
        json!({"expected_status": true})
    ));
    let missing = env.run_env_function_call(&EnvFunctionCall {
        env_type: User,
        func_name: "lock_sim_card".into(),
        arguments: Default::default(),
    });
    assert_eq!(
        missing.map_err(|e| e.message),
        Err(
            "TelecomUserTools.lock_sim_card() missing 1 required positional argument: 'mode'"
                .into()
        )
    );
    let unknown = env.run_env_function_call(&EnvFunctionCall {
        env_type: Agent,
        func_name: "nope".into(),
        arguments: Default::default(),
    });
    assert_eq!(
        unknown.map_err(|e| e.message),
        Err("'TelecomTools' object has no attribute 'nope'".into())
    );
    let invalid = env.run_env_function_call(&EnvFunctionCall {
        env_type: User,
        func_name: "assert_service_status".into(),
        arguments: json!({"expected_status": "bogus"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    });
    assert_eq!(
        invalid.map_err(|e| e.message),
        Err("'bogus' is not a valid NetworkStatus".into())
    );
    // Helpers are not tools: the model cannot call them.
    assert_eq!(
        err(&mut env, User, "set_user_info", json!({})),
        "Error: Tool 'set_user_info' not found."
    );
}
