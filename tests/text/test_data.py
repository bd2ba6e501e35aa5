"""text_corpus: what the bundle hands the LM methods (a typed extra) and reports (stats)."""

from __future__ import annotations

import pytest
import torch

from mmssl.data import DataBundle
from mmssl.errors import ConfigError
from mmssl.modalities.text.data import text_corpus
from mmssl.modalities.text.extras import LanguageData
from mmssl.modalities.text.methods import clm

PARAGRAPHS = [f"paragraph {i} of the {{name}} document, with a few more words." for i in range(30)]


@pytest.fixture
def corpus(tmp_path):
    for name in ("alpha", "beta"):
        (tmp_path / f"{name}.txt").write_text("\n\n".join(p.replace("{name}", name) for p in PARAGRAPHS))
    (tmp_path / "broken.txt").write_bytes("caf\xe9".encode("latin-1"))
    return tmp_path


def test_the_bundle_carries_tokenizer_and_validation_blocks_and_reports_stats(corpus, tmp_path):
    kw = dict(root=str(corpus), tokenizer_kind="bpe", vocab_size=300, min_frequency=1, block_size=16)
    data = text_corpus(**kw, val_fraction=0.2, skip_bad=True, cache_dir=str(tmp_path / "cache"))
    language = data.extra(LanguageData, needed_by="the test")
    assert len(language.tokenizer) == data.stats["vocab_size"] <= 300
    assert len(language.val_blocks) > 0 and language.val_blocks.input_ids.shape[1] == 16
    assert data.stats["num_val_tokens"] == language.val_blocks.num_tokens
    assert data.stats["num_skipped"] == 1 and data.stats["bad_files"] == [str(corpus / "broken.txt")]
    assert data.name == "text_corpus" and data.stats["corpus"] == str(corpus)


def test_lm_methods_name_the_missing_tokenizer():
    with pytest.raises(ConfigError, match="method 'clm'.*LanguageData"):
        clm(torch.nn.Identity(), DataBundle(pretrain=[], name="shapes"))
