"""Corpus readers (plain, folder, JSONL), the content-hash split, and the built-in stdlib corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mmssl.data import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.text.corpus import (
    TextUnit,
    builtin_corpus,
    read_corpus,
    read_folder,
    read_jsonl,
    read_plain_file,
    split_units,
)

SHAKESPEARE = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "text" / "tinyshakespeare" / "input.txt"
)


def test_plain_file_paragraphs_and_span_groups(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("First para\nstill first.\n\n  \nSecond.\n\n\nThird\n")
    units = read_plain_file(path, num_parts=2)
    assert [u.text for u in units] == ["First para\nstill first.", "Second.", "Third"]
    assert units[0].group == "part 0" and units[-1].group == "part 1"
    assert all(u.source.startswith(str(path)) for u in units)


def test_jsonl_fields_labels_and_bad_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "alpha beta", "lang": "x"}, {"text": "gamma", "lang": "y"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    units = read_jsonl(path, label_field="lang")
    assert [(u.text, u.group) for u in units] == [("alpha beta", "x"), ("gamma", "y")]
    assert units[1].source == f"{path}:2"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n{not json\n" + json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(CorruptFileError, match=r"bad\.jsonl.*line 2"):
        read_jsonl(bad)
    skipping = SkipBadFiles(skip=True)
    assert [u.text for u in read_jsonl(bad, skipping=skipping)] == ["ok"]
    assert [p.name for p in skipping.bad_files] == ["bad.jsonl:2", "bad.jsonl:3"]
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text(json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(CorruptFileError, match=r"no_text\.jsonl \(line 1: no string field 'text'"):
        read_jsonl(no_text)
    with pytest.raises(CorruptFileError, match="no label field 'lang'"):
        read_jsonl(bad, label_field="lang")


def test_folder_reads_text_and_jsonl_files_grouped_by_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("bee one\n\nbee two")
    (tmp_path / "sub" / "a.md").write_text("ay")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "sea"}) + "\n")
    (tmp_path / ".hidden.txt").write_text("secret")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    units = read_folder(tmp_path)
    assert [(u.group, u.text) for u in units] == [
        ("b.txt", "bee one"),
        ("b.txt", "bee two"),
        ("c.jsonl", "sea"),
        ("sub/a.md", "ay"),
    ]
    assert read_corpus(tmp_path) == units


def test_unreadable_files_are_named_or_skipped(tmp_path):
    (tmp_path / "good.txt").write_text("fine text")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(CorruptFileError, match="latin1.txt"):
        read_folder(tmp_path)
    skipping = SkipBadFiles(skip=True)
    assert [u.text for u in read_folder(tmp_path, skipping=skipping)] == ["fine text"]
    assert skipping.bad_files == [tmp_path / "latin1.txt"]
    with pytest.raises(DataError, match="not found"):
        read_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no text files"):
        read_folder(tmp_path / "empty")


def test_split_is_by_content_order_free_and_keeps_duplicates_together():
    items = [TextUnit(f"paragraph number {i}", f"s:{i}", "g") for i in range(2000)]
    items += [TextUnit("Ay.", "dup:1", "g"), TextUnit("Ay.", "dup:2", "g")]
    train, val = split_units(items, 0.1)
    assert len(train) + len(val) == len(items)
    assert 0.08 < len(val) / len(items) < 0.12
    shuffled = items[:]
    random.Random(0).shuffle(shuffled)
    train2, val2 = split_units(shuffled, 0.1)
    assert {u.source for u in val2} == {u.source for u in val}
    dup_sides = {u.source in {v.source for v in val} for u in items if u.text == "Ay."}
    assert len(dup_sides) == 1
    assert split_units(items, 0.0)[1] == []


def test_builtin_corpus_is_deterministic_and_cached(tmp_path):
    first = builtin_corpus(["json"], cache_dir=tmp_path)
    assert first and {u.group for u in first} == {"json"}
    assert any("JSON" in u.text for u in first)
    cached = list(tmp_path.glob("stdlib_docstrings_*.jsonl"))
    assert len(cached) == 1
    assert builtin_corpus(["json"], cache_dir=tmp_path) == first  # from the cache
    assert builtin_corpus(["json"], use_cache=False) == first  # extracted again
    assert split_units(first, 0.2) == split_units(builtin_corpus(["json"], cache_dir=tmp_path), 0.2)


@pytest.mark.parametrize("damage", ["cut_at_a_line_end", "edited_text", "garbage"])
def test_damaged_builtin_corpus_cache_is_named_and_extracted_again(tmp_path, caplog, damage):
    """A cache cut at the end of a line still parses as a shorter corpus, and an edited docstring as
    another one: the checksum line tells both apart from what was written."""
    import logging

    first = builtin_corpus(["json"], cache_dir=tmp_path)
    (cached,) = tmp_path.glob("stdlib_docstrings_*.jsonl")
    lines = cached.read_text(encoding="utf-8").splitlines(keepends=True)
    if damage == "cut_at_a_line_end":
        cached.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    elif damage == "edited_text":
        cached.write_text("".join(lines).replace("JSON", "YAML", 1), encoding="utf-8")
    else:
        cached.write_bytes(b"\x80\x81 not text at all")
    with caplog.at_level(logging.WARNING):
        assert builtin_corpus(["json"], cache_dir=tmp_path) == first
    assert f"ignoring unreadable cache {cached}" in caplog.text and "extracting again" in caplog.text
    assert cached.read_text(encoding="utf-8").splitlines(keepends=True) == lines  # rewritten


def test_real_sample_tinyshakespeare():
    if not SHAKESPEARE.is_file():
        pytest.skip(f"tinyshakespeare sample not found: {SHAKESPEARE}")
    units = read_corpus(SHAKESPEARE, num_parts=8)
    assert units[0].text.startswith("First Citizen:")
    assert [u.group for u in units[:1] + units[-1:]] == ["part 0", "part 7"]
    train, val = split_units(units, 0.1)
    assert 0.07 < len(val) / len(units) < 0.13


def test_tail_split_holds_out_the_contiguous_end_of_every_group():
    units = [TextUnit(f"{g} paragraph {i}", f"{g}:{i}", g) for g in ("a", "b") for i in range(20)]
    train, val = split_units(units, 0.25, "tail")
    assert [u.source for u in val] == [f"{g}:{i}" for g in ("a", "b") for i in range(15, 20)]
    assert [u.source for u in train] == [f"{g}:{i}" for g in ("a", "b") for i in range(15)]
    assert split_units(units, 0.0, "tail")[1] == []
    with pytest.raises(DataError, match="val_split must be one of hash, tail"):
        split_units(units, 0.1, "random")


def test_single_file_corpora_default_to_the_tail_split(tmp_path):
    from mmssl.modalities.text.data import text_corpus

    text = "\n\n".join(f"Paragraph {i} says word{i % 7} and word{i % 5} again." for i in range(120))
    (tmp_path / "book.txt").write_text(text)
    opts = dict(vocab_size=200, min_frequency=1, block_size=16, task_classes=2, cache_dir=str(tmp_path / "c"))
    tail = text_corpus(root=str(tmp_path / "book.txt"), **opts)
    assert tail.stats["val_split"] == "tail (10% of the units)"
    hashed = text_corpus(root=str(tmp_path / "book.txt"), val_split="hash", **opts)
    assert hashed.stats["val_split"] == "hash (10% of the units)"
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text(text)
    assert text_corpus(root=str(tmp_path / "folder"), **opts).stats["val_split"].startswith("hash")
