"""Greedy and sampled continuations of validation prompts, written as text for a person to read.

The prompts are the first ``prompt_tokens`` tokens of evenly spaced validation blocks; each gets a
greedy continuation (argmax at every step) and a sampled one (temperature, top-k), both with
transformers' ``generate`` on the causal model, so the exported model behaves the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmssl.eval.features import eval_mode
from mmssl.modalities.text.packing import TokenBlocks


@torch.no_grad()
def generate_samples(
    model: nn.Module,
    tokenizer: Any,
    blocks: TokenBlocks,
    *,
    num_prompts: int = 4,
    prompt_tokens: int = 16,
    max_new_tokens: int = 48,
    temperature: float = 0.8,
    top_k: int = 40,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[dict[str, str]]:
    """``[{"prompt", "greedy", "sampled"}]`` decoded strings for ``num_prompts`` validation prompts.

    Sampling is seeded with ``seed`` inside a forked RNG, so the caller's random state is untouched.
    """
    # Prompts from blocks whose first prompt_tokens are real text, evenly spread over the set.
    full = (blocks.attention_mask[:, :prompt_tokens].sum(dim=1) == prompt_tokens).nonzero()[:, 0].tolist()
    if not full:
        return []
    count = min(num_prompts, len(full))
    picks = [full[round(k * (len(full) - 1) / max(count - 1, 1))] for k in range(count)]
    limit = int(getattr(model.config, "n_positions", None) or model.config.max_position_embeddings)
    new = max(1, min(max_new_tokens, limit - prompt_tokens))
    out = []
    with eval_mode(model):
        for i in dict.fromkeys(picks):
            prompt = blocks.input_ids[i : i + 1, :prompt_tokens].to(device)
            common = dict(
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
                # Padding is never a training target, so its logit is meaningless: never emit it.
                common["suppress_tokens"] = [tokenizer.pad_token_id]
            greedy = model.generate(prompt, do_sample=False, **common)
            cuda = [prompt.device.index or 0] if prompt.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed + i)
                sampled = model.generate(
                    prompt, do_sample=True, temperature=temperature, top_k=top_k, **common
                )
            out.append(
                {
                    "prompt": tokenizer.decode(prompt[0]),
                    "greedy": tokenizer.decode(greedy[0, prompt_tokens:]),
                    "sampled": tokenizer.decode(sampled[0, prompt_tokens:]),
                }
            )
    return out


def write_generations(
    model: nn.Module,
    tokenizer: Any,
    blocks: TokenBlocks,
    path: str | Path,
    *,
    num_prompts: int = 4,
    device: torch.device | str = "cpu",
    **options: Any,
) -> Path:
    """:func:`generate_samples` written to ``path`` as plain text; returns the path."""
    samples = generate_samples(model, tokenizer, blocks, num_prompts=num_prompts, device=device, **options)
    lines = []
    for k, s in enumerate(samples, start=1):
        lines += [f"=== prompt {k} ===", s["prompt"], "--- greedy ---", s["greedy"]]
        lines += ["--- sampled ---", s["sampled"], ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
