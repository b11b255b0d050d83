# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
"""transformers' Qwen3ForCausalLM as the reference for worker/tau2-model.

Usage: model_reference.py COMMAND --model DIR [--input IN.json] [--out OUT]

Commands (inputs are JSON; tensors come back as a .safetensors file at OUT):
  forward  {input_ids, attention_mask?, position_ids?}  -> logits [B, T, V] (f32)
  decode   {input_ids, prefill}  prefill the first `prefill` tokens with a
           DynamicCache, then feed the rest one token at a time
           -> logits [B, T, V] stacked from the prefill and every step
  grad     {input_ids, attention_mask?, loss_mask}  SFT loss (token mean of
           the NLL of input_ids[:, t] predicted at t-1 where loss_mask[:, t])
           -> "loss" and every parameter's gradient under its HF name
  resave   {max_shard_size}  load DIR, save_pretrained to OUT (sharded)
  bench    {threads, batch, seq, gen_batch, prompt, new_tokens, steps}
           prints JSON: training tok/s (forward + backward + AdamW step) and
           generate() tok/s
  losses, train_bench  the SFT and GRPO losses of tau2-train
           (see loss_reference.py)

Loading fails if transformers reports missing, unexpected or mismatched
keys, so a checkpoint that loads here is complete.
"""

import argparse
import json
import sys
import time

import torch
from safetensors.torch import save_file
from transformers import Qwen3ForCausalLM


def load(path):
    model, info = Qwen3ForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"loading {path}: {problems}")
    return model.eval()


def tensor(x):
    return None if x is None else torch.tensor(x, dtype=torch.long)


def forward(model, inp):
    with torch.no_grad():
        out = model(
            input_ids=tensor(inp["input_ids"]),
            attention_mask=tensor(inp.get("attention_mask")),
            position_ids=tensor(inp.get("position_ids")),
            use_cache=False,
        )
    return {"logits": out.logits.float().contiguous()}


def decode(model, inp):
    from transformers import DynamicCache

    ids = tensor(inp["input_ids"])
    n = inp["prefill"]
    cache = DynamicCache(config=model.config)
    chunks = []
    with torch.no_grad():
        out = model(input_ids=ids[:, :n], past_key_values=cache, use_cache=True)
        chunks.append(out.logits)
        for t in range(n, ids.shape[1]):
            out = model(input_ids=ids[:, t : t + 1], past_key_values=out.past_key_values, use_cache=True)
            chunks.append(out.logits)
    return {"logits": torch.cat(chunks, 1).float().contiguous()}


def grad(model, inp):
    model.train()
    ids = tensor(inp["input_ids"])
    mask = tensor(inp.get("attention_mask"))
    loss_mask = tensor(inp["loss_mask"])[:, 1:].bool()
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    loss = -(logp[loss_mask]).mean()
    loss.backward()
    out = {"loss": loss.detach().reshape(1)}
    for name, p in model.named_parameters():
        out[name] = p.grad.detach().contiguous()
    # A tied lm_head shares the embedding parameter (one name above).
    return out


def resave(model, inp, out_dir):
    model.save_pretrained(out_dir, max_shard_size=inp.get("max_shard_size", "50KB"))


def bench(path, inp):
    torch.set_num_threads(inp["threads"])
    model = load(path)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    result = {"threads": torch.get_num_threads()}

    # Training: forward + backward + AdamW on B x T random ids, loss on all positions.
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, vocab, (inp["batch"], inp["seq"]), generator=g)
    times = []
    for i in range(inp["steps"] + 2):
        start = time.perf_counter()
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab).float(), ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - start)
    times.sort()
    result["train_tokens_per_s"] = inp["batch"] * inp["seq"] / times[len(times) // 2]

    # Generation: greedy, exactly new_tokens per row (no early stop).
    model.eval()
    prompt = torch.randint(0, vocab, (inp["gen_batch"], inp["prompt"]), generator=g)
    times = []
    for i in range(max(1, inp["steps"] // 2) + 1):
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=False,
                max_new_tokens=inp["new_tokens"],
                min_new_tokens=inp["new_tokens"],
                pad_token_id=0,
            )
        if i >= 1:
            times.append(time.perf_counter() - start)
    times.sort()
    result["generate_tokens_per_s"] = inp["gen_batch"] * inp["new_tokens"] / times[len(times) // 2]
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["forward", "decode", "grad", "resave", "bench", "losses", "train_bench"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input")
    ap.add_argument("--out")
    args = ap.parse_args()
    inp = {}
    if args.input:
        with open(args.input) as f:
            inp = json.load(f)
    torch.manual_seed(0)
    if args.command == "bench":
        return bench(args.model, inp)
    if args.command == "train_bench":
        import loss_reference

        return loss_reference.bench(args.model, inp)
    torch.set_num_threads(1)
    model = load(args.model)
    if args.command == "resave":
        return resave(model, inp, args.out)
    if args.command == "losses":
        import loss_reference

        return save_file(loss_reference.losses(model, inp), args.out)
    result = {"forward": forward, "decode": decode, "grad": grad}[args.command](model, inp)
    save_file(result, args.out)


if __name__ == "__main__":
    main()
