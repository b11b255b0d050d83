//! The telecom databases as the official pydantic models declare them: field
//! order, defaults, enums and number types. They are only used to validate a
//! database once (load, `update_db`); the tools work on the resulting JSON.
//!
//! Dates and datetimes are kept as the text `json.dumps(model_dump(),
//! default=str)` prints for them: `2025-02-25` and `2025-01-15 10:30:00`.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------- dates

/// A `datetime.date` field, held as its `str()`.
#[derive(Clone, Debug)]
pub struct Date(String);

/// A `datetime.datetime` field, held as its `str()`.
#[derive(Clone, Debug)]
pub struct DateTime(String);

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_date(&text)
            .map(|_| Date(text.clone()))
            .ok_or_else(|| serde::de::Error::custom(format!("invalid date {text:?}")))
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        normalize_datetime(&text)
            .map(DateTime)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid datetime {text:?}")))
    }
}

/// `YYYY-MM-DD` with a valid month and day.
fn parse_date(text: &str) -> Option<(u32, u32, u32)> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (y >= 1 && (1..=days).contains(&d)).then_some((y, m, d))
}

/// pydantic's ISO datetime input (`2025-01-15T10:30:00`, `2025-01-15 10:30`,
/// `2025-01-15`, fractions, `Z` or `+HH:MM`) printed as Python's `str(datetime)`.
fn normalize_datetime(text: &str) -> Option<String> {
    let date = text.get(..10)?;
    parse_date(date)?;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(format!("{date} 00:00:00"));
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (clock, zone) = split_zone(rest)?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    let field = |s: &str, max: u32| {
        (s.len() == 2 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (field(h, 23)?, field(m, 59)?, 0),
        [h, m, s] => (field(h, 23)?, field(m, 59)?, field(s, 59)?),
        _ => return None,
    };
    if !fraction.bytes().all(|c| c.is_ascii_digit()) || (clock.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let micros: String = fraction.chars().chain("000000".chars()).take(6).collect();
    let micros = if micros == "000000" {
        String::new()
    } else {
        format!(".{micros}")
    };
    Some(format!("{date} {h:02}:{m:02}:{s:02}{micros}{zone}"))
}

/// Splits a time of day from its UTC offset (`Z` -> `+00:00`).
fn split_zone(rest: &str) -> Option<(&str, String)> {
    if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        return Some((clock, "+00:00".into()));
    }
    match rest.find(['+', '-']) {
        None => Some((rest, String::new())),
        Some(i) => {
            let zone = &rest[i + 1..];
            let digits: String = zone.chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let sign = &rest[i..=i];
            Some((
                &rest[..i],
                format!("{sign}{}:{}", &digits[..2], &digits[2..]),
            ))
        }
    }
}

// ---------------------------------------------------------------- agent DB

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelecomDb {
    #[serde(default)]
    plans: Vec<Plan>,
    #[serde(default)]
    customers: Vec<Customer>,
    #[serde(default)]
    lines: Vec<Line>,
    #[serde(default)]
    bills: Vec<Bill>,
    #[serde(default)]
    devices: Vec<Device>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Address {
    street: String,
    city: String,
    state: String,
    zip_code: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    plan_id: String,
    name: String,
    data_limit_gb: f64,
    price_per_month: f64,
    data_refueling_price_per_gb: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DeviceType {
    Phone,
    Router,
    Tablet,
    Watch,
    Other,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Device {
    device_id: String,
    device_type: DeviceType,
    model: String,
    #[serde(default)]
    imei: Option<String>,
    is_esim_capable: bool,
    #[serde(default)]
    activated: bool,
    #[serde(default)]
    activation_date: Option<DateTime>,
    #[serde(default)]
    last_esim_transfer_date: Option<DateTime>,
}

#[derive(Serialize, Deserialize, Default)]
enum LineStatus {
    Active,
    Suspended,
    #[default]
    #[serde(rename = "Pending Activation")]
    PendingActivation,
    Closed,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    line_id: String,
    phone_number: String,
    #[serde(default)]
    status: LineStatus,
    plan_id: String,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    data_used_gb: f64,
    #[serde(default)]
    data_refueling_gb: f64,
    #[serde(default)]
    roaming_enabled: bool,
    #[serde(default)]
    contract_end_date: Option<Date>,
    #[serde(default)]
    last_plan_change_date: Option<Date>,
    #[serde(default)]
    last_sim_replacement_date: Option<Date>,
    #[serde(default)]
    suspension_start_date: Option<Date>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineItem {
    description: String,
    amount: f64,
    date: Date,
    item_type: String,
}

#[derive(Serialize, Deserialize, Default)]
enum BillStatus {
    #[default]
    Draft,
    Issued,
    #[serde(rename = "Awaiting Payment")]
    AwaitingPayment,
    Paid,
    Overdue,
    Disputed,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bill {
    bill_id: String,
    customer_id: String,
    period_start: Date,
    period_end: Date,
    issue_date: Date,
    total_due: f64,
    due_date: Date,
    #[serde(default)]
    line_items: Vec<LineItem>,
    #[serde(default)]
    status: BillStatus,
}

#[derive(Serialize, Deserialize, Default)]
enum AccountStatus {
    Active,
    Suspended,
    #[default]
    #[serde(rename = "Pending Verification")]
    PendingVerification,
    Closed,
}

#[derive(Serialize, Deserialize)]
enum PaymentMethodType {
    #[serde(rename = "Credit Card")]
    CreditCard,
    #[serde(rename = "Debit Card")]
    DebitCard,
    PayPal,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentMethod {
    method_type: PaymentMethodType,
    account_number_last_4: String,
    expiration_date: String,
}

/// The model's default `created_at` is a `date` (not validated), so it
/// prints without a time.
fn default_created_at() -> DateTime {
    DateTime("2025-01-01".into())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Customer {
    customer_id: String,
    full_name: String,
    date_of_birth: String,
    email: String,
    phone_number: String,
    address: Address,
    #[serde(default)]
    account_status: AccountStatus,
    #[serde(default)]
    payment_methods: Vec<PaymentMethod>,
    #[serde(default)]
    line_ids: Vec<String>,
    #[serde(default)]
    bill_ids: Vec<String>,
    #[serde(default = "default_created_at")]
    created_at: DateTime,
    #[serde(default)]
    last_extension_date: Option<Date>,
    #[serde(default)]
    goodwill_credit_used_this_year: f64,
}

// ---------------------------------------------------------------- user DB

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TelecomUserDb {
    #[serde(default)]
    device: PhoneAttributes,
    #[serde(default)]
    surroundings: Surroundings,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum SimStatus {
    #[default]
    Active,
    Missing,
    LockedPin,
    LockedPuk,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Default)]
enum NetworkTechnology {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "2G")]
    TwoG,
    #[serde(rename = "3G")]
    ThreeG,
    #[serde(rename = "4G")]
    FourG,
    #[default]
    #[serde(rename = "5G")]
    FiveG,
}

#[derive(Serialize, Deserialize, Default)]
enum NetworkModePreference {
    #[default]
    #[serde(rename = "4g_5g_preferred")]
    FourG5GPreferred,
    #[serde(rename = "4g_only")]
    FourGOnly,
    #[serde(rename = "3g_only")]
    ThreeGOnly,
    #[serde(rename = "2g_only")]
    TwoGOnly,
}

#[derive(Serialize, Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum SignalStrength {
    None,
    Poor,
    Fair,
    #[default]
    Good,
    Excellent,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum PerformanceLevel {
    #[default]
    Unknown,
    Poor,
    Fair,
    Good,
    Excellent,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum NetworkStatus {
    #[default]
    Connected,
    Searching,
    NoService,
    EmergencyOnly,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum ApnName {
    #[default]
    Internet,
    Broken,
}

fn yes() -> bool {
    true
}
fn battery() -> i64 {
    80
}
fn default_mms_apn() -> Option<String> {
    Some("mms".into())
}
fn default_mmsc_url() -> Option<String> {
    Some(super::user::DEFAULT_MMSC_URL.into())
}
fn no_signal() -> SignalStrength {
    SignalStrength::None
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApnSettings {
    #[serde(default)]
    apn_name: ApnName,
    #[serde(default)]
    reset_at_reboot: bool,
    #[serde(default = "default_mms_apn")]
    mms_apn: Option<String>,
    #[serde(default = "default_mmsc_url")]
    mmsc_url: Option<String>,
    #[serde(default)]
    mms_proxy: Option<String>,
    #[serde(default)]
    mms_port: Option<i64>,
}

impl Default for ApnSettings {
    fn default() -> Self {
        Self {
            apn_name: ApnName::Internet,
            reset_at_reboot: false,
            mms_apn: default_mms_apn(),
            mmsc_url: default_mmsc_url(),
            mms_proxy: None,
            mms_port: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VpnDetails {
    #[serde(default)]
    server_address: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    server_performance: PerformanceLevel,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AppPermissions {
    #[serde(default)]
    sms: bool,
    #[serde(default)]
    storage: bool,
    #[serde(default)]
    phone: bool,
    #[serde(default)]
    network: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppStatus {
    app_name: String,
    #[serde(default)]
    permissions: AppPermissions,
}

fn default_apps() -> IndexMap<String, AppStatus> {
    let app = |name: &str, permissions| {
        (
            name.to_string(),
            AppStatus {
                app_name: name.into(),
                permissions,
            },
        )
    };
    IndexMap::from([
        app(
            "messaging",
            AppPermissions {
                sms: true,
                storage: true,
                phone: true,
                network: false,
            },
        ),
        app(
            "browser",
            AppPermissions {
                sms: false,
                storage: true,
                phone: false,
                network: true,
            },
        ),
    ])
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneAttributes {
    #[serde(default)]
    sim_card_status: SimStatus,
    #[serde(default)]
    sim_card_missing: bool,
    #[serde(default)]
    airplane_mode: bool,
    #[serde(default)]
    network_signal_strength: SignalStrength,
    #[serde(default)]
    network_technology_connected: NetworkTechnology,
    #[serde(default)]
    network_connection_status: NetworkStatus,
    #[serde(default = "battery")]
    battery_level: i64,
    #[serde(default = "yes")]
    data_enabled: bool,
    #[serde(default)]
    roaming_enabled: bool,
    #[serde(default)]
    network_mode_preference: NetworkModePreference,
    #[serde(default)]
    active_apn_settings: ApnSettings,
    #[serde(default)]
    wifi_enabled: bool,
    #[serde(default)]
    wifi_connected: bool,
    #[serde(default)]
    wifi_ssid: Option<String>,
    #[serde(default = "no_signal")]
    wifi_signal_strength: SignalStrength,
    #[serde(default)]
    wifi_calling_enabled: bool,
    #[serde(default)]
    wifi_calling_mms_over_wifi: bool,
    #[serde(default)]
    data_saver_mode: bool,
    #[serde(default)]
    vpn_enabled_setting: bool,
    #[serde(default)]
    vpn_connected: bool,
    #[serde(default)]
    vpn_details: Option<VpnDetails>,
    #[serde(default = "default_apps")]
    app_statuses: IndexMap<String, AppStatus>,
}

impl Default for PhoneAttributes {
    fn default() -> Self {
        Self {
            sim_card_status: SimStatus::Active,
            sim_card_missing: false,
            airplane_mode: false,
            network_signal_strength: SignalStrength::Good,
            network_technology_connected: NetworkTechnology::FiveG,
            network_connection_status: NetworkStatus::Connected,
            battery_level: battery(),
            data_enabled: true,
            roaming_enabled: false,
            network_mode_preference: NetworkModePreference::FourG5GPreferred,
            active_apn_settings: ApnSettings::default(),
            wifi_enabled: false,
            wifi_connected: false,
            wifi_ssid: None,
            wifi_signal_strength: SignalStrength::None,
            wifi_calling_enabled: false,
            wifi_calling_mms_over_wifi: false,
            data_saver_mode: false,
            vpn_enabled_setting: false,
            vpn_connected: false,
            vpn_details: None,
            app_statuses: default_apps(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentRequest {
    bill_id: String,
    amount_due: f64,
    #[serde(default)]
    paid: bool,
}

fn default_signals() -> IndexMap<NetworkTechnology, SignalStrength> {
    IndexMap::from([
        (NetworkTechnology::TwoG, SignalStrength::Poor),
        (NetworkTechnology::ThreeG, SignalStrength::Fair),
        (NetworkTechnology::FourG, SignalStrength::Good),
        (NetworkTechnology::FiveG, SignalStrength::Excellent),
    ])
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Surroundings {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    is_abroad: bool,
    #[serde(default)]
    roaming_allowed: bool,
    #[serde(default = "default_signals")]
    signal_strength: IndexMap<NetworkTechnology, SignalStrength>,
    #[serde(default)]
    mobile_data_usage_exceeded: bool,
    #[serde(default = "yes")]
    line_active: bool,
    #[serde(default)]
    payment_request: Option<PaymentRequest>,
}

impl Default for Surroundings {
    fn default() -> Self {
        Self {
            name: None,
            phone_number: None,
            is_abroad: false,
            roaming_allowed: false,
            signal_strength: default_signals(),
            mobile_data_usage_exceeded: false,
            line_active: true,
            payment_request: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_print_as_python_str() {
        assert_eq!(
            normalize_datetime("2025-01-15T10:30:00").as_deref(),
            Some("2025-01-15 10:30:00")
        );
        assert_eq!(
            normalize_datetime("2025-01-15").as_deref(),
            Some("2025-01-15 00:00:00")
        );
        assert_eq!(
            normalize_datetime("2025-01-15 10:30:00.5Z").as_deref(),
            Some("2025-01-15 10:30:00.500000+00:00")
        );
        assert_eq!(normalize_datetime("2025-02-30T10:30:00"), None);
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
        assert_eq!(parse_date("2025-2-01"), None);
    }
}
