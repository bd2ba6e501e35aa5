"""Export: transformers' Auto classes load the folder without mmssl and give identical logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

from mmssl.modalities.text.export import export_pretrained
from mmssl.modalities.text.tokenizer import TokenizerSpec, train_tokenizer
from mmssl.registry import ENCODERS

TEXTS = ["It is a truth universally acknowledged, that a single man in possession of a good fortune."] * 4
SENTENCE = "a single man of good fortune"

# Runs in a fresh interpreter: only torch and transformers, and it checks that mmssl was not imported.
LOADER = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
    out = {}
    for kind, folder in json.loads(sys.argv[1]).items():
        auto = AutoModelForMaskedLM if kind == "mlm" else AutoModelForCausalLM
        model = auto.from_pretrained(folder).eval()
        tok = AutoTokenizer.from_pretrained(folder)
        ids = tok(sys.argv[2], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        out[kind] = {"class": type(model).__name__, "ids": ids[0].tolist(), "logits": logits[0].tolist()}
    assert not any(name == "mmssl" or name.startswith("mmssl.") for name in sys.modules)
    print(json.dumps(out))
    """
)


def test_exported_folders_load_with_auto_classes_and_give_identical_logits(tmp_path):
    torch.manual_seed(0)
    folders, expected = {}, {}
    for kind, encoder_name, tok_kind in (("mlm", "bert_small", "wordpiece"), ("clm", "gpt2_small", "bpe")):
        tok = train_tokenizer(TEXTS, TokenizerSpec(tok_kind, vocab_size=120, min_frequency=1, max_length=32))
        encoder = ENCODERS.build(
            encoder_name, vocab_size=len(tok), hidden_size=32, num_layers=2, num_heads=2, max_length=32
        )
        encoder.eval()
        folders[kind] = str(export_pretrained(encoder, tok, tmp_path / kind))
        ids = tok(SENTENCE, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected[kind] = (ids[0].tolist(), encoder.model(input_ids=ids).logits[0])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(folders), SENTENCE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["mlm"]["class"] == "BertForMaskedLM" and loaded["clm"]["class"] == "GPT2LMHeadModel"
    for kind, (ids, logits) in expected.items():
        assert loaded[kind]["ids"] == ids, kind
        assert torch.allclose(torch.tensor(loaded[kind]["logits"]), logits, atol=1e-5, rtol=0), kind
