//! The retail tools as the official toolkit declares them (recipe commit:
//! 15 tools, in `RetailTools` definition order), with their docstrings
//! verbatim: they become the OpenAI schemas the model sees.

use crate::tool::{ToolKind, ToolSpec, Ty, p};

const ORDER_ID: &str = "The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.";
const USER_ID: &str = "The user id, such as 'sara_doe_496'.";
const ADDRESS1: &str = "The first line of the address, such as '123 Main St'.";
const ADDRESS2: &str = "The second line of the address, such as 'Apt 1' or ''.";
const CITY: &str = "The city, such as 'San Francisco'.";
const STATE: &str = "The state, such as 'CA'.";
const COUNTRY: &str = "The country, such as 'USA'.";
const ZIP: &str = "The zip code, such as '12345'.";
const PAYMENT_METHOD_ID: &str = "The payment method id to pay or receive refund for the item price difference, such as 'gift_card_0000000' or 'credit_card_0000000'. These can be looked up from the user or order details.";
pub static TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "calculate",
        qualname: "RetailTools.calculate",
        kind: ToolKind::Generic,
        short: "Calculate the result of a mathematical expression.",
        long: "",
        params: &[p(
            "expression",
            Ty::Str,
            "The mathematical expression to calculate, such as '2 + 2'. The expression can contain numbers, operators (+, -, *, /), parentheses, and spaces.",
        )],
        defs: None,
    },
    ToolSpec {
        name: "cancel_pending_order",
        qualname: "RetailTools.cancel_pending_order",
        kind: ToolKind::Write,
        short: "Cancel a pending order. If the order is already processed or delivered,",
        long: "it cannot be cancelled. The agent needs to explain the cancellation detail\nand ask for explicit user confirmation (yes/no) to proceed. If the user confirms,\nthe order status will be changed to 'cancelled' and the payment will be refunded.\nThe refund will be added to the user's gift card balance immediately if the payment\nwas made using a gift card, otherwise the refund would take 5-7 business days to process.\nThe function returns the order details after the cancellation.",
        params: &[
            p("order_id", Ty::Str, ORDER_ID),
            p(
                "reason",
                Ty::Str,
                "The reason for cancellation, which should be either 'no longer needed' or 'ordered by mistake'.",
            ),
        ],
        defs: None,
    },
    ToolSpec {
        name: "exchange_delivered_order_items",
        qualname: "RetailTools.exchange_delivered_order_items",
        kind: ToolKind::Write,
        short: "Exchange items in a delivered order to new items of the same product type.",
        long: "For a delivered order, return or exchange can be only done once by the agent.\nThe agent needs to explain the exchange detail and ask for explicit user confirmation (yes/no) to proceed.",
        params: &[
            p("order_id", Ty::Str, ORDER_ID),
            p(
                "item_ids",
                Ty::List(&Ty::Str),
                "The item ids to be exchanged, each such as '1008292230'. There could be duplicate items in the list.",
            ),
            p(
                "new_item_ids",
                Ty::List(&Ty::Str),
                "The item ids to be exchanged for, each such as '1008292230'.\nThere could be duplicate items in the list. Each new item id should match the item id\nin the same position and be of the same product.",
            ),
            p(
                "payment_method_id",
                Ty::Str,
                "The payment method id to pay or receive refund for the item price difference,\nsuch as 'gift_card_0000000' or 'credit_card_0000000'. These can be looked up\nfrom the user or order details.",
            ),
        ],
        defs: None,
    },
    ToolSpec {
        name: "find_user_id_by_name_zip",
        qualname: "RetailTools.find_user_id_by_name_zip",
        kind: ToolKind::Read,
        short: "Find user id by first name, last name, and zip code. If the user is not found, the function",
        long: "will return an error message. By default, find user id by email, and only call this function\nif the user is not found by email or cannot remember email.",
        params: &[
            p(
                "first_name",
                Ty::Str,
                "The first name of the customer, such as 'John'.",
            ),
            p(
                "last_name",
                Ty::Str,
                "The last name of the customer, such as 'Doe'.",
            ),
            p(
                "zip",
                Ty::Str,
                "The zip code of the customer, such as '12345'.",
            ),
        ],
        defs: None,
    },
    ToolSpec {
        name: "find_user_id_by_email",
        qualname: "RetailTools.find_user_id_by_email",
        kind: ToolKind::Read,
        short: "Find user id by email. If the user is not found, the function will return an error message.",
        long: "",
        params: &[p(
            "email",
            Ty::Str,
            "The email of the user, such as 'something@example.com'.",
        )],
        defs: None,
    },
    ToolSpec {
        name: "get_order_details",
        qualname: "RetailTools.get_order_details",
        kind: ToolKind::Read,
        short: "Get the status and details of an order.",
        long: "",
        params: &[p("order_id", Ty::Str, ORDER_ID)],
        defs: None,
    },
    ToolSpec {
        name: "get_product_details",
        qualname: "RetailTools.get_product_details",
        kind: ToolKind::Read,
        short: "Get the inventory details of a product.",
        long: "",
        params: &[p(
            "product_id",
            Ty::Str,
            "The product id, such as '6086499569'. Be careful the product id is different from the item id.",
        )],
        defs: None,
    },
    ToolSpec {
        name: "get_user_details",
        qualname: "RetailTools.get_user_details",
        kind: ToolKind::Read,
        short: "Get the details of a user, including their orders.",
        long: "",
        params: &[p("user_id", Ty::Str, USER_ID)],
        defs: None,
    },
    ToolSpec {
        name: "list_all_product_types",
        qualname: "RetailTools.list_all_product_types",
        kind: ToolKind::Read,
        short: "List the name and product id of all product types.",
        long: "Each product type has a variety of different items with unique item ids and options.\nThere are only 50 product types in the store.",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "modify_pending_order_address",
        qualname: "RetailTools.modify_pending_order_address",
        kind: ToolKind::Write,
        short: "Modify the shipping address of a pending order. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.",
        long: "",
        params: &[
            p("order_id", Ty::Str, ORDER_ID),
            p("address1", Ty::Str, ADDRESS1),
            p("address2", Ty::Str, ADDRESS2),
            p("city", Ty::Str, CITY),
            p("state", Ty::Str, STATE),
            p("country", Ty::Str, COUNTRY),
            p("zip", Ty::Str, ZIP),
        ],
        defs: None,
    },
    ToolSpec {
        name: "modify_pending_order_items",
        qualname: "RetailTools.modify_pending_order_items",
        kind: ToolKind::Write,
        short: "Modify items in a pending order to new items of the same product type. For a pending order, this function can only be called once. The agent needs to explain the exchange detail and ask for explicit user confirmation (yes/no) to proceed.",
        long: "",
        params: &[
            p("order_id", Ty::Str, ORDER_ID),
            p(
                "item_ids",
                Ty::List(&Ty::Str),
                "The item ids to be modified, each such as '1008292230'. There could be duplicate items in the list.",
            ),
            p(
                "new_item_ids",
                Ty::List(&Ty::Str),
                "The item ids to be modified for, each such as '1008292230'. There could be duplicate items in the list. Each new item id should match the item id in the same position and be of the same product.",
            ),
            p("payment_method_id", Ty::Str, PAYMENT_METHOD_ID),
        ],
        defs: None,
    },
    ToolSpec {
        name: "modify_pending_order_payment",
        qualname: "RetailTools.modify_pending_order_payment",
        kind: ToolKind::Write,
        short: "Modify the payment method of a pending order. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.",
        long: "",
        params: &[
            p("order_id", Ty::Str, ORDER_ID),
            p("payment_method_id", Ty::Str, PAYMENT_METHOD_ID),
        ],
        defs: None,
    },
    ToolSpec {
        name: "modify_user_address",
        qualname: "RetailTools.modify_user_address",
        kind: ToolKind::Write,
        short: "Modify the default address of a user. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.",
        long: "",
        params: &[
            p("user_id", Ty::Str, USER_ID),
            p("address1", Ty::Str, ADDRESS1),
            p("address2", Ty::Str, ADDRESS2),
            p("city", Ty::Str, CITY),
            p("state", Ty::Str, STATE),
            p("country", Ty::Str, COUNTRY),
            p("zip", Ty::Str, ZIP),
        ],
        defs: None,
    },
    ToolSpec {
        name: "return_delivered_order_items",
        qualname: "RetailTools.return_delivered_order_items",
        kind: ToolKind::Write,
        short: "Return some items of a delivered order.",
        long: "The order status will be changed to 'return requested'.\nThe agent needs to explain the return detail and ask for explicit user confirmation (yes/no) to proceed.\nThe user will receive follow-up email for how and where to return the item.",
        params: &[
            p("order_id", Ty::Str, ORDER_ID),
            p(
                "item_ids",
                Ty::List(&Ty::Str),
                "The item ids to be returned, each such as '1008292230'. There could be duplicate items in the list.",
            ),
            p(
                "payment_method_id",
                Ty::Str,
                "The payment method id to pay or receive refund for the item price difference, such as 'gift_card_0000000' or 'credit_card_0000000'.\nThese can be looked up from the user or order details.",
            ),
        ],
        defs: None,
    },
    ToolSpec {
        name: "transfer_to_human_agents",
        qualname: "RetailTools.transfer_to_human_agents",
        kind: ToolKind::Generic,
        short: "Transfer the user to a human agent, with a summary of the user's issue.",
        long: "Only transfer if\n -  the user explicitly asks for a human agent\n -  given the policy and the available tools, you cannot solve the user's issue.",
        params: &[p("summary", Ty::Str, "A summary of the user's issue.")],
        defs: None,
    },
];
