"""``data_tools/prepare_audio.py procedural`` writes only under the cache root it is given, in the layout a
run reads with ``MMSSL_CACHE`` set to that root."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmssl.modalities.audio.clusters import stats_cache_dir
from mmssl.modalities.audio.procedural import default_av_cache_dir
from tests.data_tool import load_data_tool

SMALL = ["--num-classes", "2", "--train-per-class", "2", "--test-per-class", "1"]
SMALL += ["--duration", "0.5", "--image-size", "16", "--fps", "4", "--sample-rate", "8000"]


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("given", [True, False], ids=["cache-dir", "default"])
def test_procedural_writes_only_under_its_cache_root(tmp_path, monkeypatch, given):
    default_root = tmp_path / "default_cache"
    monkeypatch.setenv("MMSSL_CACHE", str(default_root))
    root = tmp_path / "given" if given else default_root
    argv = ["procedural", *SMALL] + (["--cache-dir", str(root)] if given else [])
    assert load_data_tool("prepare_audio").main(argv) == 0

    written = _files(tmp_path)
    assert written, "nothing written"
    assert all((tmp_path / f).is_relative_to(root) for f in written), sorted(map(str, written))
    # the layout a run reads with MMSSL_CACHE=root
    monkeypatch.setenv("MMSSL_CACHE", str(root))
    assert any(default_av_cache_dir().rglob("*.mp4")) and any(default_av_cache_dir().rglob("*.wav"))
    assert len(list(stats_cache_dir().glob("*.npz"))) == 1
