//! The mock domain: users and their tasks; small enough to test the
//! orchestrator and evaluator end to end.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{load_db, update_table_db};
use crate::data::{DataDir, DataError, read_text};
use crate::db::{Table, TableDb};
use crate::env::{DomainState, PyErr, PyResult};
use crate::py;
use crate::py::pydantic::Validator;
use crate::task::Requestor;
use crate::tool::{ToolKind, ToolResult, ToolSpec, Ty, p, p_none};

const STATUS: &[&str] = &["pending", "completed"];

#[derive(Serialize, Deserialize)]
struct Task {
    task_id: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    status: String,
}

#[derive(Serialize, Deserialize)]
struct User {
    user_id: String,
    name: String,
    tasks: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct MockDb {
    tasks: IndexMap<String, Task>,
    users: IndexMap<String, User>,
}

pub(super) fn load(data: &DataDir) -> Result<(String, Box<dyn DomainState>), DataError> {
    let path = data.domain_file(tau2_api::bench::Domain::Mock, "db.json")?;
    let db = TableDb::from_value(load_db::<MockDb>(&path)?).ok_or_else(|| DataError::Invalid {
        path,
        message: "every top-level field must be a table of records".into(),
    })?;
    let policy = read_text(&data.domain_file(tau2_api::bench::Domain::Mock, "policy.md")?)?;
    Ok((policy, Box::new(Mock { db })))
}

/// Episodes share the loaded records until they write one (see `crate::db`).
#[derive(Clone)]
struct Mock {
    db: TableDb,
}

const QUAL: &str = "MockTools";

static TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "create_task",
        qualname: "MockTools.create_task",
        kind: ToolKind::Write,
        short: "Create a new task for a user.",
        long: "",
        params: &[
            p("user_id", Ty::Str, "The ID of the user creating the task"),
            p("title", Ty::Str, "The title of the task"),
            p_none("description", Ty::Str, "Optional description of the task"),
        ],
        defs: None,
    },
    ToolSpec {
        name: "get_users",
        qualname: "MockTools.get_users",
        kind: ToolKind::Read,
        short: "Get all users in the database.",
        long: "",
        params: &[],
        defs: None,
    },
    ToolSpec {
        name: "update_task_status",
        qualname: "MockTools.update_task_status",
        kind: ToolKind::Write,
        short: "Update the status of a task.",
        long: "",
        params: &[
            p("task_id", Ty::Str, "The ID of the task to update"),
            p("status", Ty::Literal(STATUS), "The new status of the task"),
        ],
        defs: None,
    },
    ToolSpec {
        name: "transfer_to_human_agents",
        qualname: "MockTools.transfer_to_human_agents",
        kind: ToolKind::Generic,
        short: "Transfer the user to a human agent, with a summary of the user's issue.",
        long: "Only transfer if\n -  the user explicitly asks for a human agent\n -  given the policy and the available tools, you cannot solve the user's issue.",
        params: &[p("summary", Ty::Str, "A summary of the user's issue.")],
        defs: None,
    },
];

impl Mock {
    fn table(&self, key: &str) -> PyResult<&Table> {
        self.db.table(key).ok_or_else(|| broken(key))
    }

    fn map(&mut self, key: &str) -> PyResult<&mut Table> {
        self.db.table_mut(key).ok_or_else(|| broken(key))
    }

    fn has(&self, table: &str, key: &Value) -> PyResult<bool> {
        if !py::is_hashable(key) {
            return Err(PyErr::type_error(py::unhashable(key)));
        }
        let table = self.table(table)?;
        Ok(key.as_str().is_some_and(|k| table.contains_key(k)))
    }

    fn create_task(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let user_id = &args["user_id"];
        if !self.has("users", user_id)? {
            return Err(PyErr::value(format!("User {} not found", py::str(user_id))));
        }
        let title = &args["title"];
        let description = args.get("description").unwrap_or(&Value::Null);
        let mut check = Validator::new();
        check.str("title", title);
        check.opt_str("description", description);
        check
            .finish("Task")
            .map_err(|e| PyErr::new("ValidationError", e.to_string()))?;
        let task_id = format!("task_{}", self.map("tasks")?.len() + 1);
        let task = json!({"task_id": task_id, "title": title, "description": description, "status": "pending"});
        self.map("tasks")?.insert(task_id.clone(), task.clone());
        let user_key = user_id.as_str().unwrap_or_default();
        if let Some(Value::Array(tasks)) = self
            .map("users")?
            .get_mut(user_key)
            .and_then(|u| u.get_mut("tasks"))
        {
            tasks.push(Value::String(task_id));
        }
        Ok(ToolResult::Model(task))
    }

    fn update_task_status(&mut self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let task_id = &args["task_id"];
        if !self.has("tasks", task_id)? {
            return Err(PyErr::value(format!("Task {} not found", py::str(task_id))));
        }
        let key = task_id.as_str().unwrap_or_default();
        let task = self.map("tasks")?.get_mut(key).map(|t| {
            // No validation on assignment: any value is stored as given.
            t["status"] = args["status"].clone();
            t.clone()
        });
        Ok(ToolResult::Model(task.unwrap_or(Value::Null)))
    }

    fn count_tasks(&self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let user_id = &args["user_id"];
        if !self.has("users", user_id)? {
            return Err(PyErr::value(format!("User {} not found", py::str(user_id))));
        }
        let n = self
            .table("users")?
            .get(user_id.as_str().unwrap_or_default())
            .and_then(|u| u["tasks"].as_array())
            .map_or(0, Vec::len);
        Ok(ToolResult::Plain(Value::Bool(py::eq(
            &json!(n),
            &args["expected_number"],
        ))))
    }

    fn task_status_is(&self, args: &Map<String, Value>) -> PyResult<ToolResult> {
        let task_id = &args["task_id"];
        if !self.has("tasks", task_id)? {
            return Err(PyErr::value(format!("Task {} not found", py::str(task_id))));
        }
        let status = self
            .table("tasks")?
            .get(task_id.as_str().unwrap_or_default())
            .map_or(&Value::Null, |t| &t["status"]);
        Ok(ToolResult::Plain(Value::Bool(py::eq(
            status,
            &args["expected_status"],
        ))))
    }
}

impl DomainState for Mock {
    fn agent_tools(&self) -> &'static [ToolSpec] {
        TOOLS
    }

    fn call(
        &mut self,
        side: Requestor,
        name: &str,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        if side == Requestor::User {
            return Err(PyErr::attribute(format!(
                "'NoneType' object has no attribute '{name}'"
            )));
        }
        match name {
            "create_task" => self.create_task(args),
            "get_users" => Ok(ToolResult::Model(Value::Array(
                self.table("users")?.values().cloned().collect(),
            ))),
            "update_task_status" => self.update_task_status(args),
            "transfer_to_human_agents" => Ok(ToolResult::Text("Transfer successful".into())),
            "assert_number_of_tasks" => {
                bind(name, &["user_id", "expected_number"], args)?;
                self.count_tasks(args)
            }
            "assert_task_status" => {
                bind(name, &["task_id", "expected_status"], args)?;
                self.task_status_is(args)
            }
            other => Err(PyErr::attribute(format!(
                "'{QUAL}' object has no attribute '{other}'"
            ))),
        }
    }

    fn db(&self, side: Requestor) -> Option<Cow<'_, Value>> {
        (side == Requestor::Assistant).then(|| Cow::Owned(self.db.to_value()))
    }

    fn same_db(&self, other: &dyn DomainState) -> bool {
        other
            .as_any()
            .downcast_ref::<Self>()
            .is_some_and(|o| o.db == self.db)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn update_db(&mut self, side: Requestor, data: &Map<String, Value>) -> PyResult<()> {
        match side {
            Requestor::Assistant => update_table_db::<MockDb>(&mut self.db, data).map(drop),
            Requestor::User => Err(PyErr::attribute(
                "'NoneType' object has no attribute 'update_db'",
            )),
        }
    }

    fn clone_state(&self) -> Box<dyn DomainState> {
        Box::new(self.clone())
    }
}

fn broken(table: &str) -> PyErr {
    PyErr::new(
        "RuntimeError",
        format!("mock database has no table {table}"),
    )
}

/// Binds a helper function's (all required) parameters.
fn bind(name: &str, params: &'static [&'static str], args: &Map<String, Value>) -> PyResult<()> {
    let qualname = format!("{QUAL}.{name}");
    crate::py::call::bind(&qualname, params.iter().map(|p| (*p, true)), args)?;
    Ok(())
}
