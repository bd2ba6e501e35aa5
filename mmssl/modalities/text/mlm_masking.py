"""BERT's masked-language-model corruption (Devlin et al. 2019, Sec. 3.1 and Appendix A.1).

Each non-special token is selected independently with probability ``p = 0.15``; a selected token
is replaced by ``[MASK]`` with probability 0.8, by a uniformly random token of the vocabulary with
probability 0.1, and left unchanged otherwise. The model predicts the original token at the
selected positions only: ``labels`` hold it there and -100 (ignored by cross-entropy) elsewhere.
Special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[UNK]``, ``[MASK]``) are never selected. This is
what transformers' ``DataCollatorForLanguageModeling`` does; the test suite checks that the rates
agree.

Why not :mod:`mmssl.core.masking`: its masks hide the same number ``round(ratio * N)`` of tokens in
every sample and split them into visible / hidden index sets for an encoder that drops the hidden
ones (MAE). BERT keeps the sequence length, replaces rather than removes, and selects each token
by an independent coin, so the count varies per sequence and special tokens are excluded.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move.
    return generator.device if generator is not None else device


def special_tokens_mask(input_ids: Tensor, special_ids: Tensor | list[int]) -> Tensor:
    """Bool ``[B, L]``: True where the token is one of ``special_ids``."""
    special = torch.as_tensor(special_ids, dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, special)


def mask_tokens(
    input_ids: Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Tensor | list[int],
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Corrupt ``input_ids [B, L]`` as BERT does; returns ``(inputs, labels)`` (a new tensor each).

    ``vocab_size``: random replacements are drawn from ``0 .. vocab_size - 1`` (the tokenizer's
    size, as transformers does). The three draws per token are independent uniforms: selection
    ``u1 < p`` (0 for special tokens), then ``u2 < mask_replace_prob`` -> ``[MASK]``,
    ``mask_replace_prob <= u2 < mask_replace_prob + random_replace_prob`` -> random token.
    """
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must lie in [0, 1], got {mlm_probability}")
    if min(mask_replace_prob, random_replace_prob) < 0 or mask_replace_prob + random_replace_prob > 1:
        raise ValueError("mask_replace_prob and random_replace_prob must be >= 0 and sum to at most 1")
    shape, device = tuple(input_ids.shape), input_ids.device
    protected = special_tokens_mask(input_ids, special_ids)
    where = _draw_device(generator, device)
    coin = torch.rand(shape, generator=generator, device=where).to(device)
    selected = (coin < mlm_probability) & ~protected
    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)
    action = torch.rand(shape, generator=generator, device=where).to(device)
    to_mask = selected & (action < mask_replace_prob)
    to_random = selected & (action >= mask_replace_prob) & (action < mask_replace_prob + random_replace_prob)
    random_ids = torch.randint(vocab_size, shape, generator=generator, device=where, dtype=input_ids.dtype)
    random_ids = random_ids.to(device)
    inputs = input_ids.masked_fill(to_mask, mask_token_id)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels
