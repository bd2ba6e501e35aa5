"""Tokenizers: special-token layout, byte-level round trip, the cache (hit, and misses on any change)."""

from __future__ import annotations

import pytest

from mmssl.cache import verify_checksums
from mmssl.errors import DataError
from mmssl.modalities.text import tokenizer as tokenizer_module
from mmssl.modalities.text.tokenizer import TokenizerSpec, cached_tokenizer, load_tokenizer, train_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "To be, or not to be, that is the question.",
    "All that glitters is not gold; all that wander are not lost.",
] * 5


def test_wordpiece_layout_and_bert_style_encoding():
    tok = train_tokenizer(TEXTS, TokenizerSpec("wordpiece", vocab_size=200, min_frequency=1))
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    ids = tok("The lazy fox")["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and 1 not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "the lazy fox"  # lower-cased


def test_byte_level_bpe_represents_any_text():
    tok = train_tokenizer(TEXTS, TokenizerSpec("bpe", vocab_size=300, min_frequency=1))
    assert (tok.eos_token_id, tok.bos_token_id, tok.pad_token_id) == (0, 0, 1)
    text = "Naïve café — 東京 🙂 {'x': 1}"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text


def test_cache_hit_then_misses_when_texts_or_settings_change(tmp_path, monkeypatch):
    spec = TokenizerSpec("wordpiece", vocab_size=200, min_frequency=1)
    first, folder, hit = cached_tokenizer(TEXTS, spec, cache_dir=tmp_path)
    assert not hit and (folder / "tokenizer.json").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been loaded, not trained")

    monkeypatch.setattr(tokenizer_module, "train_tokenizer", no_training)
    second, folder2, hit2 = cached_tokenizer(TEXTS, spec, cache_dir=tmp_path)
    assert hit2 and folder2 == folder
    assert second("to be or not")["input_ids"] == first("to be or not")["input_ids"]
    assert second.get_vocab() == first.get_vocab()
    monkeypatch.undo()
    for change in ({"vocab_size": 150}, {"lowercase": False}, {"kind": "bpe"}):
        kw = {"kind": "wordpiece", "vocab_size": 200, "min_frequency": 1, **change}
        _, other, hit3 = cached_tokenizer(TEXTS, TokenizerSpec(**kw), cache_dir=tmp_path)
        assert not hit3 and other != folder, change
    _, other, hit4 = cached_tokenizer(TEXTS[:-1], spec, cache_dir=tmp_path)
    assert not hit4 and other != folder


def test_load_tokenizer_from_a_folder_and_a_clear_error_when_missing(tmp_path):
    tok = train_tokenizer(TEXTS, TokenizerSpec("wordpiece", vocab_size=200, min_frequency=1))
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert again("a single step")["input_ids"] == tok("a single step")["input_ids"]
    with pytest.raises(DataError, match="no tokenizer"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(DataError, match="tokenizer kind"):
        train_tokenizer(TEXTS, TokenizerSpec("sentencepiece"))


@pytest.mark.parametrize("damage", ["truncated", "edited_vocab", "bad_structure", "pickle"])
def test_damaged_tokenizer_cache_is_named_and_trained_again(tmp_path, caplog, damage):
    """Cut short, a vocabulary entry edited (still valid JSON: only the checksum tells), JSON of the
    wrong shape, or a pickle that would run code: never used; trained again and the cache replaced."""
    import logging
    import pickle

    spec = TokenizerSpec("wordpiece", vocab_size=200, min_frequency=1)
    first, folder, _ = cached_tokenizer(TEXTS, spec, cache_dir=tmp_path)
    victim = folder / "tokenizer.json"
    text = victim.read_text()
    assert verify_checksums(folder) is None
    marker = tmp_path / "pwned"
    if damage == "truncated":
        victim.write_text(text[: len(text) // 2])
    elif damage == "edited_vocab":
        assert '"quick":' in text
        victim.write_text(text.replace('"quick":', '"quack":'))
    elif damage == "bad_structure":
        victim.write_text('{"version": 1}')
    else:

        class RunsCode:
            def __reduce__(self):
                return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

        victim.write_bytes(pickle.dumps(RunsCode()))
    with caplog.at_level(logging.WARNING):
        again, folder2, hit = cached_tokenizer(TEXTS, spec, cache_dir=tmp_path)
    assert not hit and folder2 == folder and not marker.exists()
    assert f"ignoring damaged tokenizer cache {folder}" in caplog.text and str(victim) in caplog.text
    # trained again (the trainer breaks ties between merges in no fixed order) and the cache replaced
    assert again("to be or not")["input_ids"][0] == first.cls_token_id and verify_checksums(folder) is None
    assert cached_tokenizer(TEXTS, spec, cache_dir=tmp_path)[2]  # and reused from then on


def test_a_tokenizer_file_that_is_not_one_is_a_data_error_naming_the_folder(tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text('{"version": 1}')
    with pytest.raises(DataError, match=f"cannot load the tokenizer in {tmp_path / 'tok'}"):
        load_tokenizer(tmp_path / "tok")
