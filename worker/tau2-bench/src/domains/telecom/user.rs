//! The user's toolkit (`TelecomUserTools`): a simulated phone and the user's
//! surroundings. Tool results are the exact human-readable texts upstream
//! builds, status bar included.
//!
//! Like upstream, the device is a model that does not validate assignments:
//! `set_network_mode_preference` stores a non-string mode as given and
//! `set_apn_settings` a non-dict value as the APN settings. Later calls then
//! fail on the attribute access exactly where Python does, after the state
//! changes made before that point.

use serde_json::{Map, Value, json};

use super::apn;
use super::py_ops::{compare, field, model, model_mut, no_attr, round2, str_for, truthy};
use crate::env::{PyErr, PyResult};
use crate::py;
use crate::tool::ToolResult;

pub const DEFAULT_MMSC_URL: &str = "http://mms.carrier.com/mms/wapenc";

const MODES: [&str; 4] = ["4g_5g_preferred", "4g_only", "3g_only", "2g_only"];
const PERMISSIONS: [&str; 4] = ["sms", "storage", "phone", "network"];

/// The user's database (`TelecomUserDB.model_dump()`).
#[derive(Clone)]
pub struct UserTools {
    pub db: Value,
    /// Whether `device.vpn_details` is upstream's shared default object.
    vpn_is_shared: bool,
    /// Upstream quirk: `connect_vpn` assigns one class-level `VpnDetails`
    /// object (not a copy) and `break_vpn` sets its performance to poor, so
    /// every later `connect_vpn` reports a poor server. Upstream that object
    /// lives as long as the process, which makes results depend on the
    /// episodes run before; we keep the quirk within one episode only, as if
    /// each episode ran in a fresh process (the parity harness resets it too).
    shared_vpn_poor: bool,
}

impl UserTools {
    pub fn new(db: Value) -> Self {
        Self {
            db,
            vpn_is_shared: false,
            shared_vpn_poor: false,
        }
    }

    /// After `update_db` the models are new objects, none shared.
    pub fn replaced(&mut self) {
        self.vpn_is_shared = false;
    }

    // ------------------------------------------------------------ fields

    fn dev(&self, field: &str) -> &Value {
        &self.db["device"][field]
    }

    fn on(&self, field: &str) -> bool {
        truthy(self.dev(field))
    }

    fn set(&mut self, field: &str, value: Value) {
        if let Some(device) = self.db.get_mut("device").and_then(Value::as_object_mut) {
            device.insert(field.into(), value);
        }
    }

    pub fn around(&self, field: &str) -> &Value {
        &self.db["surroundings"][field]
    }

    pub fn set_around(&mut self, field: &str, value: Value) {
        if let Some(s) = self
            .db
            .get_mut("surroundings")
            .and_then(Value::as_object_mut)
        {
            s.insert(field.into(), value);
        }
    }

    /// `device.active_apn_settings.<attr>` (read).
    fn apn(&self, attr: &str) -> PyResult<&Value> {
        Ok(field(model(self.dev("active_apn_settings"), attr)?, attr))
    }

    fn dev_mut(&mut self, field: &str) -> Option<&mut Value> {
        self.db.get_mut("device")?.get_mut(field)
    }

    /// `device.<model>.<attr> = value`, or `AttributeError` when a non-model
    /// value was stored there.
    fn set_model_attr(&mut self, model: &str, attr: &str, value: Value) -> PyResult<()> {
        match self.dev_mut(model) {
            Some(m) => {
                model_mut(m, attr)?.insert(attr.into(), value);
                Ok(())
            }
            None => Err(no_attr(&Value::Null, attr)),
        }
    }

    fn app(&self, app_name: &Value) -> PyResult<Option<&Map<String, Value>>> {
        if !py::is_hashable(app_name) {
            return Err(PyErr::type_error(py::unhashable(app_name)));
        }
        let apps = self.dev("app_statuses");
        Ok(app_name
            .as_str()
            .and_then(|name| apps.get(name))
            .and_then(Value::as_object))
    }

    // ------------------------------------------------------------ simulation

    fn sim_status(&self) -> &str {
        if self.on("sim_card_missing") {
            "missing"
        } else {
            self.dev("sim_card_status").as_str().unwrap_or_default()
        }
    }

    fn signal_for(&self, technology: &str) -> Value {
        let signal = &self.around("signal_strength")[technology];
        if signal.is_null() {
            json!("none")
        } else {
            signal.clone()
        }
    }

    fn connect_to(&mut self, technology: &str) {
        let signal = self.signal_for(technology);
        self.set("network_technology_connected", json!(technology));
        self.set("network_signal_strength", signal);
    }

    fn no_service(&mut self) {
        self.set("network_connection_status", json!("no_service"));
        self.set("network_technology_connected", json!("none"));
        self.set("network_signal_strength", json!("none"));
    }

    /// The network search: connects by the mode preference when the SIM is
    /// active, then airplane mode, a broken APN or an inactive line cut it.
    pub fn simulate_network_search(&mut self) -> PyResult<()> {
        if self.sim_status() == "active" {
            self.set("network_connection_status", json!("connected"));
            // A non-string preference stored as given falls back to 4G.
            match self.dev("network_mode_preference").as_str() {
                Some("4g_5g_preferred") if self.signal_for("5G") != "none" => {
                    self.connect_to("5G");
                }
                Some("3g_only") => self.connect_to("3G"),
                Some("2g_only") => self.connect_to("2G"),
                _ => self.connect_to("4G"),
            }
        } else {
            self.no_service();
        }
        if self.on("airplane_mode") {
            self.no_service();
        }
        if self.apn("apn_name")? == "broken" {
            self.no_service();
        }
        if !truthy(self.around("line_active")) {
            self.no_service();
        }
        Ok(())
    }

    fn mobile_data_working(&self) -> bool {
        if self.on("airplane_mode") || self.dev("network_signal_strength") == "none" {
            return false;
        }
        if self.dev("network_connection_status") == "no_service" {
            return false;
        }
        if truthy(self.around("is_abroad"))
            && (!self.on("roaming_enabled") || !truthy(self.around("roaming_allowed")))
        {
            return false;
        }
        self.on("data_enabled") && !truthy(self.around("mobile_data_usage_exceeded"))
    }

    /// (speed in Mbps, description); `None` without mobile data.
    fn speed_test(&self) -> Option<(f64, &'static str)> {
        if !self.mobile_data_working() {
            return None;
        }
        let details = self.dev("vpn_details");
        let poor_vpn =
            self.on("vpn_connected") && truthy(details) && details["server_performance"] == "poor";
        let mut factor = if poor_vpn { 0.1 } else { 1.0 };
        if self.on("data_saver_mode") {
            factor *= 0.2;
        }
        let (min, max) = match self.dev("network_technology_connected").as_str() {
            Some("2G") => (0.1, 0.4),
            Some("3G") => (1.0, 5.0),
            Some("4G") => (10.0, 100.0),
            Some("5G") => (50.0, 500.0),
            _ => (0.0, 0.0),
        };
        let signal = match self.dev("network_signal_strength").as_str() {
            Some("poor") => 0.2,
            Some("fair") => 0.5,
            Some("good") => 0.8,
            Some("excellent") => 1.0,
            _ => 0.0,
        };
        let speed = round2((min + max) / 2.0 * signal * factor);
        let desc = match speed {
            s if s < 1.0 => "Very Poor",
            s if s < 5.0 => "Poor",
            s if s < 25.0 => "Fair",
            s if s < 100.0 => "Good",
            _ => "Excellent",
        };
        Some((speed, desc))
    }

    fn can_send_mms_now(&self) -> PyResult<bool> {
        if !self.mobile_data_working() || self.dev("network_technology_connected") == "2G" {
            return Ok(false);
        }
        if self.on("wifi_calling_enabled") && self.on("wifi_calling_mms_over_wifi") {
            return Ok(false);
        }
        if self.apn("mmsc_url")?.is_null() {
            return Ok(false);
        }
        Ok(self.app(&json!("messaging"))?.is_some_and(|app| {
            let p = field(app, "permissions");
            truthy(&p["storage"]) && truthy(&p["sms"])
        }))
    }

    fn status_bar(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.on("airplane_mode") {
            parts.push("✈️ Airplane Mode".into());
        } else {
            let signal = match self.dev("network_signal_strength").as_str() {
                Some("poor") => "📶¹ Poor",
                Some("fair") => "📶² Fair",
                Some("good") => "📶³ Good",
                Some("excellent") => "📶⁴ Excellent",
                _ => "📵 No Signal",
            };
            parts.push(signal.into());
            let technology = self.dev("network_technology_connected");
            let connected = technology != "none";
            if connected {
                parts.push(py::str(technology));
            }
            if self.on("data_enabled") && connected {
                parts.push("📱 Data Enabled".into());
                if self.on("data_saver_mode") {
                    parts.push("🔽 Data Saver".into());
                }
            } else {
                parts.push("📵 Data Disabled".into());
            }
        }
        if self.on("wifi_enabled") && self.on("wifi_connected") {
            let ssid = self.dev("wifi_ssid");
            parts.push(if truthy(ssid) {
                format!("📡 Connected to {}", py::str(ssid))
            } else {
                "📡 Enabled".into()
            });
        }
        if self.on("vpn_connected") {
            parts.push("🔒 VPN Connected".into());
        }
        parts.push(format!("🔋 {}%", py::str(self.dev("battery_level"))));
        parts.join(" | ")
    }

    /// `"<update>\nStatus Bar: <bar>"`, the shape of most write tools' results.
    fn with_bar(&self, update: &str) -> ToolResult {
        ToolResult::Text(format!("{update}\nStatus Bar: {}", self.status_bar()))
    }

    // ------------------------------------------------------------ network

    pub fn check_status_bar(&self) -> ToolResult {
        ToolResult::Text(format!("Status Bar: {}", self.status_bar()))
    }

    pub fn check_network_status(&self) -> ToolResult {
        let on_off = |b| if b { "ON" } else { "OFF" };
        let yes_no = |b| if b { "Yes" } else { "No" };
        let text = |f: &str| py::str(self.dev(f));
        let mut lines = vec![
            format!("Airplane Mode: {}", on_off(self.on("airplane_mode"))),
            format!("SIM Card Status: {}", self.sim_status()),
            format!("Cellular Connection: {}", text("network_connection_status")),
            format!("Cellular Signal: {}", text("network_signal_strength")),
            format!(
                "Cellular Network Type: {}",
                text("network_technology_connected")
            ),
            format!("Mobile Data Enabled: {}", yes_no(self.on("data_enabled"))),
            format!(
                "Data Roaming Enabled: {}",
                yes_no(self.on("roaming_enabled"))
            ),
            format!("Wi-Fi Radio: {}", on_off(self.on("wifi_enabled"))),
            format!("Wi-Fi Connected: {}", yes_no(self.on("wifi_connected"))),
        ];
        if self.on("wifi_connected") {
            lines.push(format!("Connected Wi-Fi Network: {}", text("wifi_ssid")));
        }
        ToolResult::Text(lines.join("\n"))
    }

    pub fn check_network_mode_preference(&self) -> PyResult<ToolResult> {
        let mode = self.dev("network_mode_preference");
        let mode = mode.as_str().ok_or_else(|| no_attr(mode, "value"))?;
        Ok(ToolResult::Text(format!("Network Mode Preference: {mode}")))
    }

    /// A string must name a mode; anything else is stored as given and then
    /// fails on `.value` (or, for `None`, reads as an invalid option).
    pub fn set_network_mode_preference(&mut self, mode: &Value) -> PyResult<ToolResult> {
        if let Some(text) = mode.as_str()
            && !MODES.contains(&text)
        {
            return Ok(self.with_bar(&format!(
                "Failed to set network mode: '{text}' is not a valid option. Please use one of: {}",
                MODES.join(", ")
            )));
        }
        self.set("network_mode_preference", mode.clone());
        self.simulate_network_search()?;
        match mode {
            Value::String(text) => {
                Ok(self.with_bar(&format!("Preferred Network Mode set to: {text}")))
            }
            Value::Null => Ok(self.with_bar(&format!(
                "Failed to set network mode: 'None' is not a valid option. Please use one of: {}",
                MODES.join(", ")
            ))),
            other => Err(no_attr(other, "value")),
        }
    }

    pub fn run_speed_test(&self) -> ToolResult {
        let Some((speed, desc)) = self.speed_test() else {
            return ToolResult::Text("Speed test failed: No Connection.".into());
        };
        let advice = match desc {
            "Very Poor" => "Connection is very slow. Basic web browsing might be difficult.",
            "Poor" => "Connection is slow. Web browsing may be sluggish, streaming difficult.",
            "Fair" => "Connection is okay for web browsing and some standard definition streaming.",
            "Good" => "Connection is good for most activities, including HD streaming.",
            _ => "Connection is very fast.",
        };
        ToolResult::Text(format!(
            "Speed Test Result: {speed:.2} Mbps ({desc}). {advice}"
        ))
    }

    // ------------------------------------------------------------ airplane mode

    fn toggle_airplane(&mut self) -> PyResult<bool> {
        let was_on = self.on("airplane_mode");
        self.set("airplane_mode", json!(!was_on));
        if !was_on || self.on("wifi_enabled") {
            self.disconnect_wifi();
        }
        if was_on {
            self.set("network_connection_status", json!("searching"));
        } else if self.on("vpn_connected") {
            self.disconnect_vpn_now();
        }
        self.simulate_network_search()?;
        Ok(self.on("airplane_mode"))
    }

    fn disconnect_wifi(&mut self) {
        self.set("wifi_connected", json!(false));
        self.set("wifi_ssid", Value::Null);
        self.set("wifi_signal_strength", json!("none"));
    }

    pub fn toggle_airplane_mode(&mut self) -> PyResult<ToolResult> {
        let on = self.toggle_airplane()?;
        Ok(self.with_bar(&format!("Airplane Mode is now {}.", on_off(on))))
    }

    /// `turn_airplane_mode_on` / `_off`: toggles, and toggles back if needed.
    pub fn turn_airplane_mode(&mut self, on: bool) -> PyResult<ToolResult> {
        if self.toggle_airplane()? != on {
            self.toggle_airplane()?;
        }
        Ok(ToolResult::Text(format!(
            "Airplane Mode is now {}.",
            on_off(on)
        )))
    }

    // ------------------------------------------------------------ SIM card

    pub fn check_sim_status(&self) -> ToolResult {
        let text = match self.sim_status() {
            "active" => "Your SIM card is active and working.".to_string(),
            "missing" => "No SIM card detected in the phone.".to_string(),
            "locked_pin" => "The SIM card is locked with a PIN code.".to_string(),
            "locked_puk" => "The SIM card is locked with a PUK code.".to_string(),
            other => format!("Unknown SIM status: {other}"),
        };
        ToolResult::Text(text)
    }

    pub fn reseat_sim_card(&mut self) -> PyResult<ToolResult> {
        self.set("sim_card_missing", json!(false));
        self.simulate_network_search()?;
        Ok(self.with_bar("SIM card re-seated successfully."))
    }

    pub fn unseat_sim_card(&mut self) -> PyResult<ToolResult> {
        self.set("sim_card_missing", json!(true));
        self.simulate_network_search()?;
        Ok(ToolResult::Text("SIM card un-seated successfully.".into()))
    }

    pub fn lock_sim_card(&mut self, mode: &Value) -> PyResult<ToolResult> {
        match mode.as_str() {
            Some("pin") => self.set("sim_card_status", json!("locked_pin")),
            Some("puk") => self.set("sim_card_status", json!("locked_puk")),
            _ => {}
        }
        self.simulate_network_search()?;
        Ok(ToolResult::Text(format!(
            "SIM card locked successfully in {} mode.",
            py::str(mode)
        )))
    }

    // ------------------------------------------------------------ data and roaming

    /// Flips a device switch; data and roaming switches trigger a network search.
    fn flip(&mut self, field: &str, search: bool) -> PyResult<bool> {
        let on = !self.on(field);
        self.set(field, json!(on));
        if search {
            self.simulate_network_search()?;
        }
        Ok(on)
    }

    /// A toggle tool: "<Name> is now ON|OFF." and the status bar.
    pub fn toggle(&mut self, field: &str, name: &str, search: bool) -> PyResult<ToolResult> {
        let on = self.flip(field, search)?;
        Ok(self.with_bar(&format!("{name} is now {}.", on_off(on))))
    }

    /// The `turn_<x>_on|off` helpers: flip, and flip back if that was wrong.
    pub fn turn(
        &mut self,
        field: &str,
        on: bool,
        search: bool,
        done: &str,
    ) -> PyResult<ToolResult> {
        if self.flip(field, search)? != on {
            self.flip(field, search)?;
        }
        Ok(ToolResult::Text(done.into()))
    }

    pub fn turn_data_on(&mut self) -> ToolResult {
        self.set("data_enabled", json!(true));
        ToolResult::Text("Data connection restored.".into())
    }

    pub fn check_data_restriction_status(&self) -> ToolResult {
        ToolResult::Text(
            if self.on("data_saver_mode") {
                "Data Saver mode is ON (limits data usage)."
            } else {
                "Data Saver mode is OFF."
            }
            .into(),
        )
    }

    // ------------------------------------------------------------ APN

    pub fn check_apn_settings(&self) -> PyResult<ToolResult> {
        let settings = model(self.dev("active_apn_settings"), "model_copy")?;
        let name = py::str(field(settings, "apn_name"));
        let mmsc = field(settings, "mmsc_url");
        let mmsc = if truthy(mmsc) {
            py::str(mmsc)
        } else {
            "Not Set".into()
        };
        Ok(ToolResult::Text(format!(
            "Current APN Name: {name}\nMMSC URL (for picture messages): {mmsc}\n(These are technical settings, usually best left unchanged.)"
        )))
    }

    /// A dict is validated into the model; anything else is stored as given
    /// and then fails on `.apn_name`.
    pub fn set_apn_settings(&mut self, settings: &Value) -> PyResult<ToolResult> {
        let settings = match settings {
            Value::Object(dict) => apn::validate(dict)?,
            other => other.clone(),
        };
        self.set("active_apn_settings", settings);
        let name = py::str(self.apn("apn_name")?);
        self.simulate_network_search()?;
        Ok(self.with_bar(&format!("APN settings set to: {name}")))
    }

    pub fn reset_apn_settings(&mut self) -> PyResult<ToolResult> {
        self.set_model_attr("active_apn_settings", "reset_at_reboot", json!(true))?;
        self.simulate_network_search()?;
        Ok(self.with_bar("APN settings will reset at reboot."))
    }

    pub fn break_apn_settings(&mut self) -> PyResult<ToolResult> {
        self.set_model_attr("active_apn_settings", "apn_name", json!("broken"))?;
        self.simulate_network_search()?;
        if self.dev("network_connection_status") != "no_service" {
            return Err(PyErr::assertion(""));
        }
        Ok(ToolResult::Text(
            "APN settings broken. Please call reset_apn_settings() to fix.".into(),
        ))
    }

    pub fn break_apn_mms_setting(&mut self) -> PyResult<ToolResult> {
        self.set_model_attr("active_apn_settings", "mmsc_url", Value::Null)?;
        if self.can_send_mms_now()? {
            return Err(PyErr::assertion(""));
        }
        Ok(ToolResult::Text(
            "APN MMS setting broken. Please call reset_apn_settings() to fix.".into(),
        ))
    }

    // ------------------------------------------------------------ Wi-Fi

    pub fn check_wifi_status(&self) -> ToolResult {
        let text = if !self.on("wifi_enabled") {
            "Wi-Fi is turned OFF.".to_string()
        } else if self.on("wifi_connected") {
            format!(
                "Wi-Fi is ON and connected to '{}'. Signal strength: {}.",
                py::str(self.dev("wifi_ssid")),
                py::str(self.dev("wifi_signal_strength"))
            )
        } else {
            "Wi-Fi is ON but not connected to any network.".to_string()
        };
        ToolResult::Text(text)
    }

    pub fn toggle_wifi(&mut self) -> ToolResult {
        if self.on("airplane_mode") {
            return self.with_bar("Cannot change Wi-Fi settings while Airplane Mode is ON.");
        }
        let on = !self.on("wifi_enabled");
        self.set("wifi_enabled", json!(on));
        if !on {
            self.disconnect_wifi();
        }
        self.with_bar(&format!("Wi-Fi is now {}.", on_off(on)))
    }

    pub fn check_wifi_calling_status(&self) -> ToolResult {
        ToolResult::Text(format!(
            "Wi-Fi Calling is currently turned {}.",
            on_off(self.on("wifi_calling_enabled"))
        ))
    }

    pub fn set_wifi_calling(&mut self, enabled: &Value, mms_over_wifi: &Value) -> ToolResult {
        if !py::eq(self.dev("wifi_calling_enabled"), enabled) {
            let on = !self.on("wifi_calling_enabled");
            self.set("wifi_calling_enabled", json!(on));
        }
        let mut text = format!("Wi-Fi Calling is now {}.", on_off(truthy(enabled)));
        if !mms_over_wifi.is_null() {
            self.set("wifi_calling_mms_over_wifi", mms_over_wifi.clone());
            text += &format!("\nMMS over Wi-Fi is now {}.", on_off(truthy(mms_over_wifi)));
        }
        ToolResult::Text(text)
    }

    // ------------------------------------------------------------ VPN

    pub fn check_vpn_status(&self) -> ToolResult {
        let details = self.dev("vpn_details");
        let text = if self.on("vpn_connected") {
            match details.as_object() {
                Some(d) if !d.is_empty() => {
                    format!("VPN is ON and connected. Details: {}", vpn_repr(d))
                }
                _ => "VPN is ON and connected (no specific details available).".into(),
            }
        } else if self.on("vpn_enabled_setting") {
            "VPN is turned ON in settings, but currently not connected.".into()
        } else {
            "VPN is turned OFF.".into()
        };
        ToolResult::Text(text)
    }

    pub fn connect_vpn(&mut self) -> ToolResult {
        if self.on("vpn_connected") {
            return ToolResult::Text("VPN already connected.".into());
        }
        let performance = if self.shared_vpn_poor {
            "poor"
        } else {
            "excellent"
        };
        self.set("vpn_connected", json!(true));
        self.set(
            "vpn_details",
            json!({"server_address": "192.168.1.1", "protocol": "OpenVPN", "server_performance": performance}),
        );
        self.vpn_is_shared = true;
        self.with_bar("VPN connected successfully.")
    }

    fn disconnect_vpn_now(&mut self) -> bool {
        if !self.on("vpn_connected") {
            return false;
        }
        self.set("vpn_connected", json!(false));
        self.set("vpn_details", Value::Null);
        self.vpn_is_shared = false;
        true
    }

    pub fn disconnect_vpn(&mut self) -> ToolResult {
        if self.disconnect_vpn_now() {
            self.with_bar("VPN disconnected successfully.")
        } else {
            self.with_bar("No active VPN connection to disconnect.")
        }
    }

    pub fn break_vpn(&mut self) -> PyResult<ToolResult> {
        self.connect_vpn();
        self.set_model_attr("vpn_details", "server_performance", json!("poor"))?;
        if self.vpn_is_shared {
            self.shared_vpn_poor = true;
        }
        Ok(ToolResult::Text("VPN connection broken.".into()))
    }

    // ------------------------------------------------------------ apps

    pub fn check_installed_apps(&self) -> ToolResult {
        let names: Vec<&str> = self
            .dev("app_statuses")
            .as_object()
            .map(|apps| apps.keys().map(String::as_str).collect())
            .unwrap_or_default();
        ToolResult::Text(format!(
            "The following apps are installed on the phone: {}",
            names.join(", ")
        ))
    }

    pub fn check_app_status(&self, app_name: &Value) -> PyResult<ToolResult> {
        let name = py::str(app_name);
        let Some(app) = self.app(app_name)? else {
            return Ok(ToolResult::Text(format!(
                "App '{name}' not found on this phone."
            )));
        };
        let mut lines = vec![format!("Status for App: {name}")];
        let granted = granted(field(app, "permissions"));
        if granted.is_empty() {
            lines.push(" - Permissions: None granted.".into());
        } else {
            lines.push(" - Permissions Granted:".into());
            lines.extend(granted.iter().map(|p| format!("   - {p}")));
        }
        Ok(ToolResult::Text(lines.join("\n")))
    }

    pub fn check_app_permissions(&self, app_name: &Value) -> PyResult<ToolResult> {
        let name = py::str(app_name);
        let text = match self.app(app_name)? {
            None => format!("App '{name}' not found on this phone."),
            Some(app) => {
                let granted = granted(field(app, "permissions"));
                if granted.is_empty() {
                    format!("App '{name}' currently has no permissions granted.")
                } else {
                    format!("App '{name}' has permission for: {}.", granted.join(", "))
                }
            }
        };
        Ok(ToolResult::Text(text))
    }

    pub fn grant_app_permission(
        &mut self,
        app_name: &Value,
        permission: &Value,
    ) -> PyResult<ToolResult> {
        let (ok, message) = self.set_permission(app_name, permission, true)?;
        let result = if ok { "Success. " } else { "Error. " };
        Ok(self.with_bar(&format!("{result}{message}")))
    }

    /// `remove_app_permission`: returns the `(ok, message)` tuple.
    pub fn remove_app_permission(
        &mut self,
        app_name: &Value,
        permission: &Value,
    ) -> PyResult<ToolResult> {
        let (ok, message) = self.set_permission(app_name, permission, false)?;
        Ok(ToolResult::Plain(json!([ok, message])))
    }

    fn set_permission(
        &mut self,
        app_name: &Value,
        permission: &Value,
        grant: bool,
    ) -> PyResult<(bool, String)> {
        let found = self.app(app_name)?.is_some();
        let permission = str_for(permission, "lower")?.to_lowercase();
        let name = py::str(app_name);
        if !found {
            let verb = if grant { "grant" } else { "remove" };
            return Ok((
                false,
                format!("App '{name}' not found. Cannot {verb} permission."),
            ));
        }
        if !PERMISSIONS.contains(&permission.as_str()) {
            let message = if grant {
                format!(
                    "Permission '{permission}' not tracked for app '{name}', available permissions: {}",
                    py::repr(&json!(PERMISSIONS))
                )
            } else {
                format!("Permission '{permission}' not tracked for app '{name}'.")
            };
            return Ok((false, message));
        }
        let permissions = self
            .dev_mut("app_statuses")
            .and_then(|apps| apps.get_mut(name.as_str()))
            .and_then(|app| app.get_mut("permissions"))
            .and_then(Value::as_object_mut);
        if let Some(p) = permissions {
            p.insert(permission.clone(), json!(grant));
        }
        let message = if grant {
            format!("Permission '{permission}' granted to app '{name}'.")
        } else {
            format!("Permission '{permission}' removed from app '{name}'.")
        };
        Ok((true, message))
    }

    // ------------------------------------------------------------ MMS, reboot, payments

    pub fn can_send_mms(&self) -> PyResult<ToolResult> {
        let text = if self.can_send_mms_now()? {
            "Your messaging app can send MMS messages."
        } else {
            "Your messaging app cannot send MMS messages."
        };
        Ok(ToolResult::Text(text.into()))
    }

    pub fn reboot_device(&mut self) -> PyResult<ToolResult> {
        let mut lines = Vec::new();
        if truthy(self.apn("reset_at_reboot")?) {
            lines.push("Resetting APN settings...");
            self.set("active_apn_settings", apn::default_settings());
        }
        lines.push("Restarting network services...");
        self.set("network_connection_status", json!("searching"));
        self.simulate_network_search()?;
        Ok(self.with_bar(&lines.join("\n")))
    }

    pub fn check_payment_request(&self) -> ToolResult {
        let request = self.around("payment_request");
        if request.is_null() {
            return ToolResult::Text("No payment request has been made.".into());
        }
        ToolResult::Text(format!(
            "You have a payment request for bill {} of {} USD.",
            py::str(&request["bill_id"]),
            py::str(&request["amount_due"])
        ))
    }

    pub fn make_payment(&mut self) -> ToolResult {
        let request = self
            .db
            .get_mut("surroundings")
            .and_then(|s| s.get_mut("payment_request"))
            .and_then(Value::as_object_mut);
        let Some(request) = request else {
            return ToolResult::Text("You do not have a payment request.".into());
        };
        request.insert("paid".into(), json!(true));
        ToolResult::Text(format!(
            "Payment of {} USD has been made for bill {}.",
            py::str(field(request, "amount_due")),
            py::str(field(request, "bill_id"))
        ))
    }

    // ------------------------------------------------------------ helpers

    pub fn set_user_info(&mut self, name: &Value, phone_number: &Value) -> ToolResult {
        self.set_around("name", name.clone());
        self.set_around("phone_number", phone_number.clone());
        ToolResult::Plain(Value::Null)
    }

    pub fn set_user_location(&mut self, abroad: &Value) -> ToolResult {
        self.set_around("is_abroad", abroad.clone());
        ToolResult::Plain(Value::Null)
    }

    // ------------------------------------------------------------ assertions

    /// `device.<field> == expected`.
    pub fn device_is(&self, field: &str, expected: &Value) -> bool {
        py::eq(self.dev(field), expected)
    }

    pub fn assert_mobile_data_usage_exceeded(&self, expected: &Value) -> bool {
        py::eq(self.around("mobile_data_usage_exceeded"), expected)
    }

    pub fn assert_service_status(&self, expected: &Value) -> PyResult<bool> {
        const STATUSES: [&str; 4] = ["connected", "searching", "no_service", "emergency_only"];
        match expected.as_str() {
            Some(s) if STATUSES.contains(&s) => Ok(self.dev("network_connection_status") == s),
            _ => Err(PyErr::value(format!(
                "{} is not a valid NetworkStatus",
                py::repr(expected)
            ))),
        }
    }

    pub fn assert_mobile_data_status(&self, expected: &Value) -> bool {
        py::eq(&json!(self.mobile_data_working()), expected)
    }

    pub fn assert_can_send_mms(&self, expected: &Value) -> PyResult<bool> {
        Ok(py::eq(&json!(self.can_send_mms_now()?), expected))
    }

    pub fn assert_internet_speed(&self, speed: &Value, desc: &Value) -> PyResult<bool> {
        let (measured, label) = self.speed_test().unwrap_or((0.0, "No Connection"));
        let fast_enough = compare(">=", &json!(measured), speed)?;
        if desc.is_null() || !fast_enough {
            return Ok(fast_enough);
        }
        Ok(label.to_lowercase() == str_for(desc, "lower")?.to_lowercase())
    }

    pub fn assert_internet_not_excellent(&self) -> bool {
        self.speed_test()
            .is_none_or(|(_, desc)| desc != "Excellent")
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "ON" } else { "OFF" }
}

/// The permission names an app holds, as `check_app_*` list them.
fn granted(permissions: &Value) -> Vec<String> {
    permissions
        .as_object()
        .map(|p| {
            p.iter()
                .filter(|(_, allowed)| truthy(allowed))
                .map(|(name, _)| name.replace('_', " ").to_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// `repr(vpn_details.model_dump())`: the performance is an enum member.
fn vpn_repr(details: &Map<String, Value>) -> String {
    let fields: Vec<String> = details
        .iter()
        .map(|(key, value)| {
            let shown = match (key.as_str(), value.as_str()) {
                ("server_performance", Some(level)) => {
                    format!("<PerformanceLevel.{}: '{level}'>", level.to_uppercase())
                }
                _ => py::repr(value),
            };
            format!("{}: {shown}", py::str_repr(key))
        })
        .collect();
    format!("{{{}}}", fields.join(", "))
}
