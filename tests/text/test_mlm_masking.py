"""BERT masking: rates and special-token protection as in transformers' DataCollatorForLanguageModeling."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from mmssl.modalities.text.mlm_masking import IGNORE_INDEX, mask_tokens

VOCAB = 1000
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + [f"w{i}" for i in range(VOCAB - len(SPECIALS))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _batch(rows: int = 400, length: int = 128, seed: int = 0) -> torch.Tensor:
    """Random words with [CLS] first, [SEP]s inside, an [UNK] here and there, and [PAD] tails."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), VOCAB, (rows, length), generator=g)
    ids[:, 0] = 2
    ids[torch.rand(rows, length, generator=g) < 0.05] = 3
    ids[torch.rand(rows, length, generator=g) < 0.02] = 1
    for r in range(0, rows, 3):
        ids[r, length - int(torch.randint(1, length // 2, (1,), generator=g)) :] = 0
    return ids


def _rates(original: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, special: torch.Tensor) -> dict:
    selected = labels != IGNORE_INDEX
    n_sel = int(selected.sum())
    masked = selected & (inputs == 4)
    kept = selected & (inputs == original)
    randomised = selected & ~masked & ~kept
    return {
        "select": n_sel / int((~special).sum()),
        "mask": int(masked.sum()) / n_sel,
        "random": int(randomised.sum()) / n_sel,
        "kept": int(kept.sum()) / n_sel,
        "random_mean_id": inputs[randomised].float().mean().item(),
    }


def test_rates_match_data_collator_for_language_modeling(tokenizer):
    from transformers import DataCollatorForLanguageModeling

    original = _batch()
    special = torch.isin(original, torch.arange(len(SPECIALS)))
    ours = mask_tokens(
        original,
        mask_token_id=4,
        vocab_size=len(tokenizer),
        special_ids=tokenizer.all_special_ids,
        generator=torch.Generator().manual_seed(1),
    )
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15, seed=2)
    collator.create_rng("pt")
    # special_tokens_mask=None: the collator finds special tokens itself, an independent reference.
    theirs = collator.torch_mask_tokens(original.clone(), special_tokens_mask=None)
    r_ours, r_theirs = _rates(original, *ours, special), _rates(original, *theirs, special)
    # ~46k non-special tokens -> ~7k selected: binomial standard errors 0.0017 (select), 0.005 (mask),
    # 0.0036 (random / kept). Tolerances are ~4-5 standard errors of the difference.
    expected = {"select": 0.15, "mask": 0.8, "random": 0.1, "kept": 0.1}
    tolerance = {"select": 0.01, "mask": 0.03, "random": 0.02, "kept": 0.02}
    for key, value in expected.items():
        assert r_ours[key] == pytest.approx(value, abs=tolerance[key]), key
        assert r_ours[key] == pytest.approx(r_theirs[key], abs=tolerance[key]), key
    # Random replacements are uniform over the whole vocabulary in both (mean id ~ (V - 1) / 2).
    assert r_ours["random_mean_id"] == pytest.approx((VOCAB - 1) / 2, rel=0.06)
    assert r_theirs["random_mean_id"] == pytest.approx((VOCAB - 1) / 2, rel=0.06)


@pytest.mark.parametrize("probability", [0.15, 1.0])
def test_special_tokens_are_never_selected_and_labels_are_minus_100_elsewhere(tokenizer, probability):
    from transformers import DataCollatorForLanguageModeling

    original = _batch(rows=60, seed=3)
    special = torch.isin(original, torch.arange(len(SPECIALS)))
    inputs, labels = mask_tokens(
        original,
        mask_token_id=4,
        vocab_size=VOCAB,
        special_ids=tokenizer.all_special_ids,
        mlm_probability=probability,
        generator=torch.Generator().manual_seed(0),
    )
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=probability, seed=0)
    collator.create_rng("pt")
    ref_inputs, ref_labels = collator.torch_mask_tokens(original.clone())
    for x, y in ((inputs, labels), (ref_inputs, ref_labels)):
        assert torch.equal(x[special], original[special])  # special tokens untouched
        assert (y[special] == IGNORE_INDEX).all()  # and never a target
        selected = y != IGNORE_INDEX
        assert torch.equal(y[selected], original[selected])  # targets are the original tokens
        assert (x[~selected] == original[~selected]).all()  # only selected positions change
    if probability == 1.0:  # every non-special token is a target in both
        assert torch.equal(labels != IGNORE_INDEX, ~special)
        assert torch.equal(ref_labels != IGNORE_INDEX, ~special)


def test_masking_is_reproducible_with_a_generator_and_leaves_its_input_alone():
    ids = _batch(rows=8, seed=5)
    before = ids.clone()
    kw = dict(mask_token_id=4, vocab_size=VOCAB, special_ids=list(range(5)))
    a = mask_tokens(ids, generator=torch.Generator().manual_seed(7), **kw)
    b = mask_tokens(ids, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(ids, before)
    with pytest.raises(ValueError):
        mask_tokens(ids, mask_replace_prob=0.8, random_replace_prob=0.3, **kw)
