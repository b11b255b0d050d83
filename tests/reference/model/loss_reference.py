# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
"""The training losses of ../shared/spec/ml.md in PyTorch, on transformers'
Qwen3ForCausalLM: the reference for worker/tau2-train's loss parity test and
training-throughput bench. Written from the formulas, not from our code.

Run through model_reference.py: COMMAND --model DIR --input IN.json [--out OUT]

  losses       {sft: {sequences}, grpo: {sequences, reference, clip_low, clip_high,
          kl_coef, entropy_coef, temperature}}  -> OUT (.safetensors):
          "sft.loss", "sft.grad.<param>", "grpo.loss", "grpo.advantages",
          "grpo.pg" / "grpo.kl" / "grpo.entropy" (sums of the per-sample
          token means over the trained samples), "grpo.grad.<param>".
  train_bench  {threads, steps, sft: {micro_batches}, grpo: {micro_batches, ...}}
          prints JSON: SFT and GRPO training tokens/s (forward, backward,
          AdamW step), median step time after two warm-up steps.

A sequence is {ids, mask} (mask[t]: token t is a target, predicted at t - 1);
GRPO sequences add group, reward, valid and old (π_old log-prob per token).
"""

import json
import time

import torch
from model_reference import load


def target_logprobs(model, ids, mask, temperature=1.0, entropy=False, attention=None, positions=None):
    """Log-probs of the target tokens (rows concatenated) under logits / T."""
    logits = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False).logits
    logits = logits[:, :-1].float() / temperature
    logp_all = torch.log_softmax(logits, -1)
    sel = mask[:, 1:]
    logp = logp_all.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)[sel]
    if not entropy:
        return logp, None
    return logp, -(logp_all.exp() * logp_all).sum(-1)[sel]


def one(seq):
    ids = torch.tensor([seq["ids"]], dtype=torch.long)
    mask = torch.tensor([seq["mask"]], dtype=torch.bool)
    return ids, mask


def sft_loss(model, sequences):
    """Token-mean NLL over every target token of the batch."""
    nll, n = 0.0, 0
    for s in sequences:
        ids, mask = one(s)
        logp, _ = target_logprobs(model, ids, mask)
        nll = nll - logp.sum()
        n += logp.numel()
    return nll / n


def group_advantages(sequences):
    """(r - mean) / (std + 1e-6) within each group over its valid samples
    (population std); invalid samples get 0 and reward 0."""
    adv = [0.0] * len(sequences)
    groups = {}
    for i, s in enumerate(sequences):
        groups.setdefault(s["group"], []).append(i)
    for idx in groups.values():
        valid = [i for i in idx if sequences[i]["valid"]]
        if not valid:
            continue
        r = torch.tensor([sequences[i]["reward"] for i in valid], dtype=torch.float64)
        std = r.std(unbiased=False)
        for i, a in zip(valid, ((r - r.mean()) / (std + 1e-6)).tolist()):
            adv[i] = a
    return adv


def grpo_loss(model, reference, g):
    """Σ over valid samples of the per-sequence token means of
    -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) + β k3 - c H, divided by
    the number of samples (invalid ones included)."""
    seqs = g["sequences"]
    adv = group_advantages(seqs)
    t = g["temperature"]
    total = 0.0
    sums = {"pg": 0.0, "kl": 0.0, "entropy": 0.0}
    for s, a in zip(seqs, adv):
        ids, mask = one(s)
        if not s["valid"] or not mask[0, 1:].any():
            continue
        logp, ent = target_logprobs(model, ids, mask, t, entropy=True)
        with torch.no_grad():
            ref, _ = target_logprobs(reference, ids, mask, t)
        old = torch.tensor(s["old"], dtype=torch.float32)[1:][mask[0, 1:]]
        ratio = torch.exp(logp - old)
        pg = -torch.minimum(ratio * a, ratio.clamp(1 - g["clip_low"], 1 + g["clip_high"]) * a).mean()
        delta = ref - logp
        kl = (torch.exp(delta) - delta - 1).mean()
        h = ent.mean()
        total = total + pg + g["kl_coef"] * kl - g["entropy_coef"] * h
        for k, v in (("pg", pg), ("kl", kl), ("entropy", h)):
            sums[k] += v.item()
    return total / len(seqs), adv, sums


def grads(model, prefix):
    return {f"{prefix}.grad.{n}": p.grad.detach().clone().contiguous() for n, p in model.named_parameters()}


def losses(model, inp):
    model.train()
    out = {}
    loss = sft_loss(model, inp["sft"]["sequences"])
    loss.backward()
    out["sft.loss"] = loss.detach().reshape(1)
    out.update(grads(model, "sft"))
    model.zero_grad(set_to_none=True)
    g = inp["grpo"]
    reference = load(g["reference"])
    loss, adv, sums = grpo_loss(model, reference, g)
    loss.backward()
    out["grpo.loss"] = loss.detach().reshape(1)
    out["grpo.advantages"] = torch.tensor(adv, dtype=torch.float64)
    for k, v in sums.items():
        out[f"grpo.{k}"] = torch.tensor([v], dtype=torch.float64)
    out.update(grads(model, "grpo"))
    return out


def padded(rows):
    """Left-padded ids, attention mask, positions and target mask."""
    width = max(len(r["ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    att = torch.zeros(len(rows), width, dtype=torch.long)
    tgt = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        n = len(r["ids"])
        ids[i, width - n :] = torch.tensor(r["ids"])
        att[i, width - n :] = 1
        tgt[i, width - n :] = torch.tensor(r["mask"])
        tgt[i, width - n] = False
    pos = (att.cumsum(1) - 1).clamp(min=0)
    return ids, att, pos, tgt


def bench_step(model, reference, opt, spec, kind):
    """One optimizer step over the given micro-batches; returns tokens."""
    tokens = 0
    if kind == "sft":
        n = sum(sum(r["mask"][1:]) for mb in spec["micro_batches"] for r in mb)
    else:
        n = spec["samples"]
    for mb in spec["micro_batches"]:
        ids, att, pos, tgt = padded(mb)
        tokens += int(att.sum())
        if kind == "sft":
            logp, _ = target_logprobs(model, ids, tgt, attention=att, positions=pos)
            loss = -logp.sum() / n
        else:
            t = spec["temperature"]
            logp, ent = target_logprobs(model, ids, tgt, t, True, att, pos)
            with torch.no_grad():
                ref, _ = target_logprobs(reference, ids, tgt, t, False, att, pos)
            old = logp.detach()
            ratio = torch.exp(logp - old)
            sizes = tgt[:, 1:].sum(1).tolist()
            adv = torch.cat([torch.full((k,), r["advantage"]) for k, r in zip(sizes, mb)])
            per_tok = -torch.minimum(ratio * adv, ratio.clamp(1 - spec["clip_low"], 1 + spec["clip_high"]) * adv)
            delta = ref - logp
            per_tok = per_tok + spec["kl_coef"] * (torch.exp(delta) - delta - 1) - spec["entropy_coef"] * ent
            loss = sum(x.mean() for x in per_tok.split(sizes)) / n
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return tokens


def bench(path, inp):
    torch.set_num_threads(inp["threads"])
    result = {"threads": torch.get_num_threads()}
    for kind in ("sft", "grpo"):
        model = load(path).train()
        reference = load(path) if kind == "grpo" else None
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.01)
        times, tokens = [], 0
        for i in range(inp["steps"] + 2):
            start = time.perf_counter()
            tokens = bench_step(model, reference, opt, inp[kind], kind)
            if i >= 2:
                times.append(time.perf_counter() - start)
        times.sort()
        result[f"{kind}_tokens_per_s"] = tokens / times[len(times) // 2]
    print(json.dumps(result))
