# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
"""Reference for tau2-chat's parity tests: transformers' apply_chat_template.

Reads one JSON object on stdin:
  {"tokenizer_dir": "...",
   "cases": [{"messages": [...], "tools": [...] | null,
              "add_generation_prompt": bool, "chat_template": "..." | null,
              "kwargs": {...}}],
   "encode": ["text", ...]}
and writes one JSON object on stdout:
  {"cases": [{"text": "...", "ids": [...]} | {"error": "..."}],
   "encode": [[ids], ...], "versions": {...}}
"""

import json
import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jinja2  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402


def ids_of(result):
    # transformers 5 returns a BatchEncoding for tokenize=True.
    if hasattr(result, "keys"):
        return list(result["input_ids"])
    return list(result)


def run_case(tok, case):
    kwargs = dict(case.get("kwargs") or {})
    common = dict(
        tools=case.get("tools"),
        add_generation_prompt=case.get("add_generation_prompt", False),
        chat_template=case.get("chat_template"),
        **kwargs,
    )
    try:
        text = tok.apply_chat_template(case["messages"], tokenize=False, **common)
        ids = tok.apply_chat_template(case["messages"], tokenize=True, **common)
    except Exception as e:  # the Rust side checks that it fails too
        return {"error": f"{type(e).__name__}: {e}"}
    return {"text": text, "ids": ids_of(ids)}


def main():
    request = json.load(sys.stdin)
    tok = AutoTokenizer.from_pretrained(request["tokenizer_dir"])
    out = {
        "cases": [run_case(tok, c) for c in request.get("cases", [])],
        "encode": [tok.encode(t, add_special_tokens=False) for t in request.get("encode", [])],
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "jinja2": jinja2.__version__,
        },
    }
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
