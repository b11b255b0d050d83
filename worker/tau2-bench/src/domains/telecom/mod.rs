//! The telecom domain: dual control. The agent works on the carrier's
//! database (customers, lines, bills), the user on a simulated phone; after
//! every step `sync` copies the carrier's facts into the user's surroundings.

mod agent;
mod apn;
mod model;
mod py_ops;
mod specs;
mod user;

use std::borrow::Cow;

use serde_json::{Map, Value, json};
use tau2_api::bench::Domain;

use self::agent::AgentTools;
use self::model::{TelecomDb, TelecomUserDb};
use self::py_ops::{arg, float_value, number, truthy};
use self::specs::{AGENT_TOOLS, USER_TOOLS};
use self::user::UserTools;
use super::{load_db, update_db};
use crate::data::{DataDir, DataError, read_text};
use crate::env::{DomainState, PyErr, PyResult};
use crate::task::Requestor;
use crate::tool::{ToolResult, ToolSpec};

pub use self::agent::TODAY;

pub(super) fn load(data: &DataDir) -> Result<(String, Box<dyn DomainState>), DataError> {
    let file = |name: &str| data.domain_file(Domain::Telecom, name);
    let agent = load_db::<TelecomDb>(&file("db.toml")?)?;
    let user = load_db::<TelecomUserDb>(&file("user_db.toml")?)?;
    let main = read_text(&file("main_policy.md")?)?;
    let tech = read_text(&file("tech_support_manual.md")?)?;
    let policy = format!(
        "<main_policy>\n{main}\n</main_policy>\n<tech_support_policy>\n{tech}\n</tech_support_policy>"
    );
    let state = Telecom {
        agent: AgentTools { db: agent },
        user: UserTools::new(user),
    };
    Ok((policy, Box::new(state)))
}

#[derive(Clone)]
struct Telecom {
    agent: AgentTools,
    user: UserTools,
}

/// The helper functions (not tools) of each toolkit: `(name, required)`
/// parameters, for binding calls from initialisation actions and assertions.
type Params = &'static [(&'static str, bool)];

const AGENT_HELPERS: &[(&str, Params)] = &[
    (
        "set_data_usage",
        &[
            ("customer_id", true),
            ("line_id", true),
            ("data_used_gb", true),
        ],
    ),
    (
        "suspend_line_for_overdue_bill",
        &[
            ("customer_id", true),
            ("line_id", true),
            ("new_bill_id", true),
            ("contract_ended", true),
        ],
    ),
    ("get_available_plan_ids", &[]),
    (
        "assert_data_refueling_amount",
        &[
            ("customer_id", true),
            ("line_id", true),
            ("expected_amount", true),
        ],
    ),
    (
        "assert_line_status",
        &[
            ("customer_id", true),
            ("line_id", true),
            ("expected_status", true),
        ],
    ),
    (
        "assert_overdue_bill_exists",
        &[("customer_id", true), ("overdue_bill_id", true)],
    ),
    ("assert_no_overdue_bill", &[("overdue_bill_id", true)]),
];

const EXPECTED: Params = &[("expected_status", true)];

const USER_HELPERS: &[(&str, Params)] = &[
    ("set_user_info", &[("name", true), ("phone_number", true)]),
    ("set_user_location", &[("abroad", true)]),
    ("turn_airplane_mode_on", &[]),
    ("turn_airplane_mode_off", &[]),
    ("unseat_sim_card", &[]),
    ("lock_sim_card", &[("mode", true)]),
    ("turn_data_on", &[]),
    ("turn_data_off", &[]),
    ("turn_roaming_on", &[]),
    ("turn_roaming_off", &[]),
    ("turn_data_saver_mode_on", &[]),
    ("turn_data_saver_mode_off", &[]),
    ("break_apn_settings", &[]),
    ("break_apn_mms_setting", &[]),
    (
        "set_wifi_calling",
        &[("enabled", true), ("mms_over_wifi", false)],
    ),
    ("break_vpn", &[]),
    (
        "remove_app_permission",
        &[("app_name", true), ("permission", true)],
    ),
    ("simulate_network_search", &[]),
    ("assert_airplane_mode_status", EXPECTED),
    ("assert_service_status", EXPECTED),
    ("assert_mobile_data_status", EXPECTED),
    ("assert_mobile_roaming_status", EXPECTED),
    ("assert_mobile_data_saver_mode_status", EXPECTED),
    (
        "assert_internet_speed",
        &[("expected_speed", true), ("expected_desc", false)],
    ),
    ("assert_internet_not_excellent", &[]),
    ("assert_can_send_mms", EXPECTED),
    ("assert_mobile_data_usage_exceeded", EXPECTED),
];

/// Binds `toolkit.name(**args)` as CPython would, or Python's
/// `AttributeError` when the toolkit has no such function.
fn bind(
    class: &str,
    tools: &[ToolSpec],
    helpers: &[(&str, Params)],
    name: &str,
    args: &Map<String, Value>,
) -> PyResult<()> {
    if let Some(tool) = tools.iter().find(|t| t.name == name) {
        tool.bind(args)?;
    } else if let Some((_, params)) = helpers.iter().find(|(n, _)| *n == name) {
        let qualname = format!("{class}.{name}");
        crate::py::call::bind(&qualname, params.iter().copied(), args)?;
    } else {
        return Err(PyErr::attribute(format!(
            "'{class}' object has no attribute '{name}'"
        )));
    }
    Ok(())
}

fn assertion(result: bool) -> ToolResult {
    ToolResult::Plain(Value::Bool(result))
}

impl Telecom {
    fn call_agent(&mut self, name: &str, args: &Map<String, Value>) -> PyResult<ToolResult> {
        bind("TelecomTools", AGENT_TOOLS, AGENT_HELPERS, name, args)?;
        let tools = &mut self.agent;
        match name {
            "get_customer_by_phone" => tools.get_customer_by_phone(args),
            "get_customer_by_id" => tools.get_customer_by_id(args),
            "get_customer_by_name" => tools.get_customer_by_name(args),
            "get_details_by_id" => tools.get_details_by_id(args),
            "suspend_line" => tools.suspend_line(args),
            "resume_line" => tools.resume_line(args),
            "get_bills_for_customer" => tools.get_bills_for_customer(args),
            "send_payment_request" => tools.send_payment_request(args),
            "get_data_usage" => tools.get_data_usage(args),
            "enable_roaming" => tools.enable_roaming(args),
            "disable_roaming" => tools.disable_roaming(args),
            "transfer_to_human_agents" => Ok(ToolResult::Text("Transfer successful".into())),
            "refuel_data" => tools.refuel_data(args),
            "set_data_usage" => tools.set_data_usage(args),
            "suspend_line_for_overdue_bill" => tools.suspend_line_for_overdue_bill(args),
            "get_available_plan_ids" => Ok(tools.get_available_plan_ids()),
            "assert_data_refueling_amount" => {
                tools.assert_data_refueling_amount(args).map(assertion)
            }
            "assert_line_status" => tools.assert_line_status(args).map(assertion),
            "assert_overdue_bill_exists" => tools.assert_overdue_bill_exists(args).map(assertion),
            "assert_no_overdue_bill" => Ok(assertion(tools.assert_no_overdue_bill(args))),
            other => Err(PyErr::attribute(format!(
                "'TelecomTools' object has no attribute '{other}'"
            ))),
        }
    }

    fn call_user(&mut self, name: &str, args: &Map<String, Value>) -> PyResult<ToolResult> {
        bind("TelecomUserTools", USER_TOOLS, USER_HELPERS, name, args)?;
        let u = &mut self.user;
        let a = |key| arg(args, key);
        let expected = a("expected_status");
        match name {
            "check_status_bar" => Ok(u.check_status_bar()),
            "check_network_status" => Ok(u.check_network_status()),
            "check_network_mode_preference" => u.check_network_mode_preference(),
            "set_network_mode_preference" => u.set_network_mode_preference(a("mode")),
            "run_speed_test" => Ok(u.run_speed_test()),
            "toggle_airplane_mode" => u.toggle_airplane_mode(),
            "check_sim_status" => Ok(u.check_sim_status()),
            "reseat_sim_card" => u.reseat_sim_card(),
            "toggle_data" => u.toggle("data_enabled", "Mobile Data", true),
            "toggle_roaming" => u.toggle("roaming_enabled", "Data Roaming", true),
            "check_data_restriction_status" => Ok(u.check_data_restriction_status()),
            "toggle_data_saver_mode" => u.toggle("data_saver_mode", "Data Saver Mode", false),
            "check_apn_settings" => u.check_apn_settings(),
            "set_apn_settings" => u.set_apn_settings(a("apn_settings")),
            "reset_apn_settings" => u.reset_apn_settings(),
            "check_wifi_status" => Ok(u.check_wifi_status()),
            "toggle_wifi" => Ok(u.toggle_wifi()),
            "check_wifi_calling_status" => Ok(u.check_wifi_calling_status()),
            "toggle_wifi_calling" => u.toggle("wifi_calling_enabled", "Wi-Fi Calling", false),
            "check_vpn_status" => Ok(u.check_vpn_status()),
            "connect_vpn" => Ok(u.connect_vpn()),
            "disconnect_vpn" => Ok(u.disconnect_vpn()),
            "check_installed_apps" => Ok(u.check_installed_apps()),
            "check_app_status" => u.check_app_status(a("app_name")),
            "check_app_permissions" => u.check_app_permissions(a("app_name")),
            "grant_app_permission" => u.grant_app_permission(a("app_name"), a("permission")),
            "can_send_mms" => u.can_send_mms(),
            "reboot_device" => u.reboot_device(),
            "check_payment_request" => Ok(u.check_payment_request()),
            "make_payment" => Ok(u.make_payment()),
            // Helper functions for initialisation actions.
            "set_user_info" => Ok(u.set_user_info(a("name"), a("phone_number"))),
            "set_user_location" => Ok(u.set_user_location(a("abroad"))),
            "turn_airplane_mode_on" => u.turn_airplane_mode(true),
            "turn_airplane_mode_off" => u.turn_airplane_mode(false),
            "unseat_sim_card" => u.unseat_sim_card(),
            "lock_sim_card" => u.lock_sim_card(a("mode")),
            "turn_data_on" => Ok(u.turn_data_on()),
            "turn_data_off" => u.turn("data_enabled", false, true, "Data connection broken."),
            "turn_roaming_on" => u.turn("roaming_enabled", true, true, "Data Roaming is now ON."),
            "turn_roaming_off" => {
                u.turn("roaming_enabled", false, true, "Data Roaming is now OFF.")
            }
            "turn_data_saver_mode_on" => {
                u.turn("data_saver_mode", true, false, "Data Saver Mode is now ON.")
            }
            "turn_data_saver_mode_off" => u.turn(
                "data_saver_mode",
                false,
                false,
                "Data Saver Mode is now OFF.",
            ),
            "break_apn_settings" => u.break_apn_settings(),
            "break_apn_mms_setting" => u.break_apn_mms_setting(),
            "set_wifi_calling" => Ok(u.set_wifi_calling(a("enabled"), a("mms_over_wifi"))),
            "break_vpn" => u.break_vpn(),
            "remove_app_permission" => u.remove_app_permission(a("app_name"), a("permission")),
            "simulate_network_search" => u
                .simulate_network_search()
                .map(|()| ToolResult::Plain(Value::Null)),
            // Assertions.
            "assert_airplane_mode_status" => Ok(assertion(u.device_is("airplane_mode", expected))),
            "assert_mobile_roaming_status" => {
                Ok(assertion(u.device_is("roaming_enabled", expected)))
            }
            "assert_mobile_data_saver_mode_status" => {
                Ok(assertion(u.device_is("data_saver_mode", expected)))
            }
            "assert_service_status" => u.assert_service_status(expected).map(assertion),
            "assert_mobile_data_status" => Ok(assertion(u.assert_mobile_data_status(expected))),
            "assert_internet_speed" => u
                .assert_internet_speed(a("expected_speed"), a("expected_desc"))
                .map(assertion),
            "assert_internet_not_excellent" => Ok(assertion(u.assert_internet_not_excellent())),
            "assert_can_send_mms" => u.assert_can_send_mms(expected).map(assertion),
            "assert_mobile_data_usage_exceeded" => {
                Ok(assertion(u.assert_mobile_data_usage_exceeded(expected)))
            }
            other => Err(PyErr::attribute(format!(
                "'TelecomUserTools' object has no attribute '{other}'"
            ))),
        }
    }

    /// `TelecomEnvironment.sync_tools`.
    fn try_sync(&mut self) -> PyResult<()> {
        let phone = self.user.around("phone_number").clone();
        if phone.is_null() {
            return Ok(());
        }
        let (active, roaming, exceeded) = self.agent.line_facts(&phone)?;
        self.user.set_around("line_active", json!(active));
        self.user.set_around("roaming_allowed", json!(roaming));
        self.user
            .set_around("mobile_data_usage_exceeded", json!(exceeded));
        let request = self.user.around("payment_request").clone();
        if !request.is_null() && truthy(&request["paid"]) {
            self.agent.set_bill_paid(&request["bill_id"])?;
            self.user.set_around("payment_request", Value::Null);
        }
        if self.user.around("payment_request").is_null()
            && let Some((bill_id, due)) = self.agent.bill_awaiting_payment(&phone)?
        {
            let amount = number(&due).map_or(due, |n| float_value(n.as_f64()));
            self.user.set_around(
                "payment_request",
                json!({"bill_id": bill_id, "amount_due": amount, "paid": false}),
            );
        }
        Ok(())
    }
}

impl DomainState for Telecom {
    fn agent_tools(&self) -> &'static [ToolSpec] {
        AGENT_TOOLS
    }

    fn user_tools(&self) -> Option<&'static [ToolSpec]> {
        Some(USER_TOOLS)
    }

    fn call(
        &mut self,
        side: Requestor,
        name: &str,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        match side {
            Requestor::Assistant => self.call_agent(name, args),
            Requestor::User => self.call_user(name, args),
        }
    }

    /// Upstream's sync raises only when the user's phone number has no line,
    /// which no task sets up (every task uses 555-123-2002); the framework's
    /// sync cannot fail, so that case leaves the state as it is.
    fn sync(&mut self) {
        let _ = self.try_sync();
    }

    fn db(&self, side: Requestor) -> Option<Cow<'_, Value>> {
        Some(Cow::Borrowed(match side {
            Requestor::Assistant => &self.agent.db,
            Requestor::User => &self.user.db,
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn update_db(&mut self, side: Requestor, data: &Map<String, Value>) -> PyResult<()> {
        match side {
            Requestor::Assistant => update_db::<TelecomDb>(&mut self.agent.db, data),
            Requestor::User => {
                update_db::<TelecomUserDb>(&mut self.user.db, data)?;
                self.user.replaced();
                Ok(())
            }
        }
    }

    fn clone_state(&self) -> Box<dyn DomainState> {
        Box::new(self.clone())
    }
}
