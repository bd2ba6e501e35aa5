"""MODEL_CARD.md: recipe, data, steps, metrics against random init, the export command; and the export
package stays out of the modality-free core."""

from __future__ import annotations

from pathlib import Path

from mmssl.export import export_run
from mmssl.export.model_card import metrics_table
from tests.export._helpers import METRICS, make_run


def test_metrics_table_pairs_means_with_their_std() -> None:
    rows = metrics_table(METRICS)
    assert rows[0] == "| metric | this run | random init |"
    assert "| fewshot_1 | 17.5 ± 1.0 | 12.5 ± 2.0 |" in rows
    assert "| knn_top1 | 30.0 | 10.0 |" in rows
    assert "| linear_top1 | 25.0 | - |" in rows  # the baseline lacks it
    assert not any("_std" in r for r in rows)
    assert metrics_table({"eval": {}}) == []


def test_card_content(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, "small_cnn", {"widths": [4, 8]}, data={"image_size": 32})
    out = tmp_path / "card"
    export_run(run_dir, "safetensors", out)
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# fake_small_cnn: simclr-pretrained `small_cnn` (image)")
    assert "a test run of small_cnn" in card
    assert f"mmssl export {run_dir} --format safetensors --out {out}" in card
    assert '| options | `{"widths": [4, 8]}` |' in card
    assert "- method: `simclr` (temperature=0.2)" in card
    assert "- steps: 2" in card and 'optimizer="lars"' in card and "final training loss: 5.25" in card
    assert "- dataset: `procedural` (image_size=32)" in card and "- train samples: 60" in card
    assert "| fewshot_1 | 17.5 ± 1.0 | 12.5 ± 2.0 |" in card
    assert "load_encoder(" in card and "load_file(" in card


def test_core_does_not_reach_the_export_package() -> None:
    from tests.test_architecture import import_graph, reachable

    graph = import_graph()
    for module in [m for m in graph if m == "mmssl.core" or m.startswith("mmssl.core.")]:
        assert not any(t.startswith("mmssl.export") for t in reachable(graph, module)), module
