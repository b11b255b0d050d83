//! The tool declarations of both toolkits, in upstream's order, with the
//! docstrings the model sees in the tool schemas.

use serde_json::{Value, json};

use crate::tool::{ParamSpec, ToolKind, ToolSpec, Ty, p};

fn twelve() -> Value {
    json!(12)
}

fn mode_schema() -> Value {
    json!({"anyOf": [{"$ref": "#/$defs/NetworkModePreference"}, {"type": "string"}]})
}

fn mode_defs() -> Value {
    json!({"NetworkModePreference": {
        "enum": ["4g_5g_preferred", "4g_only", "3g_only", "2g_only"],
        "title": "NetworkModePreference",
        "type": "string",
    }})
}

fn apn_settings_schema() -> Value {
    json!({"anyOf": [{"$ref": "#/$defs/APNSettings"}, {"additionalProperties": true, "type": "object"}]})
}

fn optional_str(default: Value, description: &str, title: &str) -> Value {
    json!({
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": default,
        "description": description,
        "title": title,
    })
}

fn apn_defs() -> Value {
    json!({
        "APNNames": {"enum": ["internet", "broken"], "title": "APNNames", "type": "string"},
        "APNSettings": {
            "additionalProperties": false,
            "description": "Represents the configuration for a single Access Point Name (APN).",
            "properties": {
                "apn_name": {
                    "$ref": "#/$defs/APNNames",
                    "default": "internet",
                    "description": "The name identifier for the APN connection.",
                },
                "reset_at_reboot": {
                    "default": false,
                    "description": "Whether the APN settings will be reset at the next reboot.",
                    "title": "Reset At Reboot",
                    "type": "boolean",
                },
                "mms_apn": optional_str(json!("mms"), "Specific APN name used for MMS traffic, if different from general data.", "Mms Apn"),
                "mmsc_url": optional_str(json!(super::user::DEFAULT_MMSC_URL), "The URL of the Multimedia Messaging Service Center (MMSC). Crucial for MMS.", "Mmsc Url"),
                "mms_proxy": optional_str(Value::Null, "The proxy server address required for MMS traffic on some networks.", "Mms Proxy"),
                "mms_port": {
                    "anyOf": [{"type": "integer"}, {"type": "null"}],
                    "default": null,
                    "description": "The proxy server port required for MMS traffic on some networks.",
                    "title": "Mms Port",
                },
            },
            "title": "APNSettings",
            "type": "object",
        },
    })
}

pub static AGENT_TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "get_customer_by_phone",
        kind: ToolKind::Read,
        qualname: "TelecomTools.get_customer_by_phone",
        short: "Finds a customer by their primary contact or line phone number.",
        long: "",
        params: &[p(
            "phone_number",
            Ty::Str,
            "The phone number to search for.",
        )],
        defs: None,
    },
    ToolSpec {
        name: "get_customer_by_id",
        kind: ToolKind::Read,
        qualname: "TelecomTools.get_customer_by_id",
        short: "Retrieves a customer directly by their unique ID.",
        long: "",
        params: &[p(
            "customer_id",
            Ty::Str,
            "The unique identifier of the customer.",
        )],
        defs: None,
    },
    ToolSpec {
        name: "get_customer_by_name",
        kind: ToolKind::Read,
        qualname: "TelecomTools.get_customer_by_name",
        short: "Searches for customers by name and DOB. May return multiple matches if names are similar,",
        long: "DOB helps disambiguate.",
        params: &[
            p("full_name", Ty::Str, "The full name of the customer."),
            p(
                "dob",
                Ty::Str,
                "Date of birth for verification, in the format YYYY-MM-DD.",
            ),
        ],
        defs: None,
    },
    ToolSpec {
        name: "get_details_by_id",
        kind: ToolKind::Read,
        qualname: "TelecomTools.get_details_by_id",
        short: "Retrieves the details for a given ID.",
        long: "The ID must be a valid ID for a Customer, Line, Device, Bill, or Plan.",
        params: &[p("id", Ty::Str, "The ID of the object to retrieve.")],
        defs: None,
    },
    ToolSpec {
        name: "suspend_line",
        kind: ToolKind::Write,
        qualname: "TelecomTools.suspend_line",
        short: "Suspends a specific line (max 6 months).",
        long: "Checks: Line status must be Active.\nLogic: Sets line status to Suspended, records suspension_start_date.",
        params: &[
            p(
                "customer_id",
                Ty::Str,
                "ID of the customer who owns the line.",
            ),
            p("line_id", Ty::Str, "ID of the line to suspend."),
            p("reason", Ty::Str, "Reason for suspension."),
        ],
        defs: None,
    },
    ToolSpec {
        name: "resume_line",
        kind: ToolKind::Write,
        qualname: "TelecomTools.resume_line",
        short: "Resumes a suspended line.",
        long: "Checks: Line status must be Suspended or Pending Activation.\nLogic: Sets line status to Active, clears suspension_start_date.",
        params: &[
            p(
                "customer_id",
                Ty::Str,
                "ID of the customer who owns the line.",
            ),
            p("line_id", Ty::Str, "ID of the line to resume."),
        ],
        defs: None,
    },
    ToolSpec {
        name: "get_bills_for_customer",
        kind: ToolKind::Read,
        qualname: "TelecomTools.get_bills_for_customer",
        short: "Retrieves a list of the customer's bills, most recent first.",
        long: "",
        params: &[
            p("customer_id", Ty::Str, "ID of the customer."),
            ParamSpec {
                name: "limit",
                ty: Ty::Int,
                doc: Some("Maximum number of bills to return."),
                default: Some(twelve),
            },
        ],
        defs: None,
    },
    ToolSpec {
        name: "send_payment_request",
        kind: ToolKind::Write,
        qualname: "TelecomTools.send_payment_request",
        short: "Sends a payment request to the customer for a specific bill.",
        long: "Checks:\n    - Customer exists\n    - Bill exists and belongs to the customer\n    - No other bills are already awaiting payment for this customer\nLogic: Sets bill status to AWAITING_PAYMENT and notifies customer.\nWarning: This method does not check if the bill is already PAID.\nAlways check the bill status before calling this method.",
        params: &[
            p(
                "customer_id",
                Ty::Str,
                "ID of the customer who owns the bill.",
            ),
            p(
                "bill_id",
                Ty::Str,
                "ID of the bill to send payment request for.",
            ),
        ],
        defs: None,
    },
    ToolSpec {
        name: "get_data_usage",
        kind: ToolKind::Read,
        qualname: "TelecomTools.get_data_usage",
        short: "Retrieves current billing cycle data usage for a line, including data",
        long: "refueling amount, data limit, and cycle end date.",
        params: &[
            p(
                "customer_id",
                Ty::Str,
                "ID of the customer who owns the line.",
            ),
            p("line_id", Ty::Str, "ID of the line to check usage for."),
        ],
        defs: None,
    },
    ToolSpec {
        name: "enable_roaming",
        kind: ToolKind::Write,
        qualname: "TelecomTools.enable_roaming",
        short: "Enables international roaming on a line.",
        long: "",
        params: &[
            p(
                "customer_id",
                Ty::Str,
                "ID of the customer who owns the line.",
            ),
            p("line_id", Ty::Str, "ID of the line to enable roaming for."),
        ],
        defs: None,
    },
    ToolSpec {
        name: "disable_roaming",
        kind: ToolKind::Write,
        qualname: "TelecomTools.disable_roaming",
        short: "Disables international roaming on a line.",
        long: "",
        params: &[
            p(
                "customer_id",
                Ty::Str,
                "ID of the customer who owns the line.",
            ),
            p("line_id", Ty::Str, "ID of the line to disable roaming for."),
        ],
        defs: None,
    },
    ToolSpec {
        name: "transfer_to_human_agents",
        kind: ToolKind::Generic,
        qualname: "TelecomTools.transfer_to_human_agents",
        short: "Transfer the user to a human agent, with a summary of the user's issue.",
        long: "Only transfer if\n -  the user explicitly asks for a human agent\n -  given the policy and the available tools, you cannot solve the user's issue.",
        params: &[p("summary", Ty::Str, "A summary of the user's issue.")],
        defs: None,
    },
    ToolSpec {
        name: "refuel_data",
        kind: ToolKind::Write,
        qualname: "TelecomTools.refuel_data",
        short: "Refuels data for a specific line, adding to the customer's bill.",
        long: "Checks: Line status must be Active, Customer owns the line.\nLogic: Adds data to the line and charges customer based on the plan's refueling rate.",
        params: &[
            p(
                "customer_id",
                Ty::Str,
                "ID of the customer who owns the line.",
            ),
            p("line_id", Ty::Str, "ID of the line to refuel data for."),
            p(
                "gb_amount",
                Ty::Float,
                "Amount of data to add in gigabytes.",
            ),
        ],
        defs: None,
    },
];

pub static USER_TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "check_status_bar",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_status_bar",
        short: "Shows what icons are currently visible in your phone's status bar (the area at the top of the screen). Displays network signal strength, mobile data status (enabled, disabled, data saver), Wi-Fi status, and battery level.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_network_status",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_network_status",
        short: "Checks your phone's connection status to cellular networks and Wi-Fi. Shows airplane mode status, signal strength, network type, whether mobile data is enabled, and whether data roaming is enabled.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_network_mode_preference",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_network_mode_preference",
        short: "Shows the current network mode preference.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "set_network_mode_preference",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.set_network_mode_preference",
        short: "Changes the type of cellular network your phone prefers to connect to (e.g., 5G, LTE/4G, 3G). Higher-speed networks (LTE/5G) provide faster data but may use more battery.",
        long: "",
        params: &[ParamSpec {
            name: "mode",
            ty: Ty::Raw(mode_schema),
            doc: None,
            default: None,
        }],
        defs: Some(mode_defs),
    },
    ToolSpec {
        name: "run_speed_test",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.run_speed_test",
        short: "Measures your current internet connection speed (download speed). Provides information about connection quality and what activities it can support.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "toggle_airplane_mode",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.toggle_airplane_mode",
        short: "Toggles Airplane Mode ON or OFF. When ON, it disconnects all wireless communications including cellular, Wi-Fi, and Bluetooth.",
        long: "Returns the new state of airplane_mode.",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_sim_status",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_sim_status",
        short: "Checks if your SIM card is working correctly and displays its current status. Shows if the SIM is active, missing, or locked with a PIN or PUK code.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "reseat_sim_card",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.reseat_sim_card",
        short: "Simulates removing and reinserting your SIM card. This can help resolve recognition issues.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "toggle_data",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.toggle_data",
        short: "Toggles your phone's mobile data connection ON or OFF. Controls whether your phone can use cellular data for internet access when Wi-Fi is unavailable.",
        long: "Returns the new data connection status.",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "toggle_roaming",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.toggle_roaming",
        short: "Toggles Data Roaming ON or OFF. When ON, your phone can use data networks in areas outside your carrier's coverage.",
        long: "Returns the new data roaming status.",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_data_restriction_status",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_data_restriction_status",
        short: "Checks if your phone has any data-limiting features active. Shows if Data Saver mode is on.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "toggle_data_saver_mode",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.toggle_data_saver_mode",
        short: "Toggles Data Saver mode ON or OFF. When ON, it reduces data usage, which may affect data speed.",
        long: "Returns the new data saver mode status.",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_apn_settings",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_apn_settings",
        short: "Checks the technical APN settings your phone uses to connect to your carrier's mobile data network. Shows current APN name and MMSC URL for picture messaging.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "set_apn_settings",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.set_apn_settings",
        short: "Sets the APN settings for the phone.",
        long: "",
        params: &[ParamSpec {
            name: "apn_settings",
            ty: Ty::Raw(apn_settings_schema),
            doc: None,
            default: None,
        }],
        defs: Some(apn_defs),
    },
    ToolSpec {
        name: "reset_apn_settings",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.reset_apn_settings",
        short: "Resets your APN settings to the default settings.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_wifi_status",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_wifi_status",
        short: "Checks your Wi-Fi connection status. Shows if Wi-Fi is turned on, which network you're connected to (if any), and the signal strength.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "toggle_wifi",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.toggle_wifi",
        short: "Toggles your phone's Wi-Fi radio ON or OFF. Controls whether your phone can discover and connect to wireless networks for internet access.",
        long: "Returns the new Wi-Fi status.",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_wifi_calling_status",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_wifi_calling_status",
        short: "Checks if Wi-Fi Calling is enabled on your device. This feature allows you to make and receive calls over a Wi-Fi network instead of using the cellular network.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "toggle_wifi_calling",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.toggle_wifi_calling",
        short: "Toggles Wi-Fi Calling ON or OFF. This feature allows you to make and receive calls over Wi-Fi instead of the cellular network, which can help in areas with weak cellular signal.",
        long: "Returns the new Wi-Fi Calling status.",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_vpn_status",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_vpn_status",
        short: "Checks if you're using a VPN (Virtual Private Network) connection. Shows if a VPN is active, connected, and displays any available connection details.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "connect_vpn",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.connect_vpn",
        short: "Connects to your VPN (Virtual Private Network).",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "disconnect_vpn",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.disconnect_vpn",
        short: "Disconnects any active VPN (Virtual Private Network) connection. Stops routing your internet traffic through a VPN server, which might affect connection speed or access to content.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_installed_apps",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_installed_apps",
        short: "Returns the name of all installed apps on the phone.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_app_status",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_app_status",
        short: "Checks detailed information about a specific app. Shows its permissions and background data usage settings.",
        long: "",
        params: &[ParamSpec {
            name: "app_name",
            ty: Ty::Str,
            doc: None,
            default: None,
        }],
        defs: None,
    },
    ToolSpec {
        name: "check_app_permissions",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_app_permissions",
        short: "Checks what permissions a specific app currently has. Shows if the app has access to features like storage, camera, location, etc.",
        long: "",
        params: &[ParamSpec {
            name: "app_name",
            ty: Ty::Str,
            doc: None,
            default: None,
        }],
        defs: None,
    },
    ToolSpec {
        name: "grant_app_permission",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.grant_app_permission",
        short: "Gives a specific permission to an app (like access to storage, camera, or location). Required for some app functions to work properly.",
        long: "",
        params: &[
            p(
                "app_name",
                Ty::Str,
                "The name of the app to grant the permission to.",
            ),
            p(
                "permission",
                Ty::Str,
                "The permission to grant, should be lowercase.",
            ),
        ],
        defs: None,
    },
    ToolSpec {
        name: "can_send_mms",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.can_send_mms",
        short: "Checks if the default messaging app can send MMS messages.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "reboot_device",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.reboot_device",
        short: "Restarts your phone completely. This can help resolve many temporary software glitches by refreshing all running services and connections.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "check_payment_request",
        kind: ToolKind::Read,
        qualname: "TelecomUserTools.check_payment_request",
        short: "Checks if the agent has sent you a payment request.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "make_payment",
        kind: ToolKind::Write,
        qualname: "TelecomUserTools.make_payment",
        short: "Makes a payment for the bill that the agent has sent you.",
        long: "",
        params: &[],
        defs: None,
    },
];
