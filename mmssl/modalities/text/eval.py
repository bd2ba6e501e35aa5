"""Language-model evaluators on held-out text (registered in ``EVALUATORS``, ``modality="text"``).

They receive the trained method (``ctx.method``) and score the validation blocks of the dataset's
:class:`~mmssl.modalities.text.extras.LanguageData`; the random-init baseline gets a freshly built
method around the untrained encoder, so both rows use the same code and the same masks.

- ``perplexity`` (causal LM): ``val_loss`` = mean next-token cross-entropy over every real target
  token (token-weighted across blocks, not a mean of block means), ``perplexity = exp(val_loss)``.
  An untrained model over ``V`` tokens sits near ``V``.
- ``masked_accuracy`` (masked LM): BERT corruption drawn from a generator seeded with ``seed``
  (identical masks for every model evaluated); ``masked_acc`` = share of selected positions whose
  argmax is the original token, ``mlm_val_loss`` their mean cross-entropy.
- ``train_throughput``: real tokens per second the method saw during training
  (``train_tokens_per_s``); absent for a method that was not trained in this process.

The generic ``few_shot`` / ``knn`` / ``linear`` evaluators need nothing text-specific: the text
dataset's ``eval_train`` / ``eval_test`` yield token windows and the encoder returns a pooled
``global`` feature.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmssl.data import DataBundle
from mmssl.eval.context import EvalContext
from mmssl.eval.features import autocast_for, eval_mode
from mmssl.modalities.text.extras import LanguageData
from mmssl.modalities.text.methods import CausalLanguageModel, MaskedLanguageModel, causal_lm_loss
from mmssl.modalities.text.mlm_masking import IGNORE_INDEX
from mmssl.modalities.text.packing import TokenBlocks


def _method_of(method: nn.Module | None, cls: type, evaluator: str, method_name: str) -> nn.Module:
    if not isinstance(method, cls):
        got = type(method).__name__ if method is not None else "no method"
        raise ValueError(f"evaluator '{evaluator}' needs a '{method_name}' method, got {got}")
    return method


def _val_blocks(data: DataBundle, evaluator: str, max_blocks: int | None) -> TokenBlocks:
    blocks = data.extra(LanguageData, needed_by=f"evaluator '{evaluator}'").val_blocks
    if len(blocks) == 0:
        raise ValueError(
            f"evaluator '{evaluator}' needs validation text; use the text_corpus dataset with "
            "val_fraction > 0"
        )
    if max_blocks is not None and max_blocks < len(blocks):
        return TokenBlocks(blocks.input_ids[:max_blocks], blocks.attention_mask[:max_blocks])
    return blocks


def _scoring(
    ctx: EvalContext, data: DataBundle, cls: type, evaluator: str, method_name: str, max_blocks: int | None
) -> tuple[nn.Module, TokenBlocks, torch.device]:
    """``(the method, moved to the device; the validation blocks to score; the device)``."""
    lm = _method_of(ctx.method, cls, evaluator, method_name)
    device = torch.device(ctx.device)
    blocks = _val_blocks(data, evaluator, max_blocks)
    return lm.to(device), blocks, device


def _batches(blocks: TokenBlocks, batch_size: int, device: torch.device):
    for start in range(0, len(blocks), batch_size):
        ids = blocks.input_ids[start : start + batch_size].to(device)
        yield ids, blocks.attention_mask[start : start + batch_size].to(device)


@torch.no_grad()
def perplexity_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    batch_size: int = 32,
    max_blocks: int | None = None,
) -> dict[str, float]:
    """Held-out next-token loss and perplexity of a ``clm`` method -> ``val_loss``, ``perplexity``.

    ``max_blocks``: score only the first that many validation blocks (None: all).
    """
    lm, blocks, device = _scoring(ctx, data, CausalLanguageModel, "perplexity", "clm", max_blocks)
    total, count = 0.0, 0
    with eval_mode(lm):
        for ids, mask in _batches(blocks, batch_size, device):
            with autocast_for(device):
                logits, labels = lm.logits_and_labels(ids, mask)
            total += float(causal_lm_loss(logits, labels, reduction="sum"))
            count += int((labels[:, 1:] != IGNORE_INDEX).sum())
    loss = total / max(count, 1)
    return {"val_loss": loss, "perplexity": math.exp(loss)}


@torch.no_grad()
def masked_accuracy_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    batch_size: int = 32,
    max_blocks: int | None = None,
) -> dict[str, float]:
    """Held-out masked-token accuracy and loss of an ``mlm`` method -> ``masked_acc``, ``mlm_val_loss``.

    Masks come from a CPU generator seeded with ``seed``, so they do not depend on the device.
    """
    lm, blocks, device = _scoring(ctx, data, MaskedLanguageModel, "masked_accuracy", "mlm", max_blocks)
    generator = torch.Generator().manual_seed(ctx.seed)
    total, correct, count = 0.0, 0, 0
    with eval_mode(lm):
        for ids, mask in _batches(blocks, batch_size, device):
            with autocast_for(device):
                logits, targets = lm.masked_logits(ids, mask, generator)
            total += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
            correct += int((logits.argmax(dim=-1) == targets).sum())
            count += targets.numel()
    if count == 0:
        raise ValueError("masked_accuracy: no token was selected in the validation blocks")
    return {"masked_acc": correct / count, "mlm_val_loss": total / count}


def train_throughput_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
) -> dict[str, float]:
    """``train_tokens_per_s`` measured by the method during training (nothing for an untrained one)."""
    method = ctx.method
    rate = getattr(method, "train_tokens_per_s", None)
    return {"train_tokens_per_s": float(rate)} if rate is not None else {}
