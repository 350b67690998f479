"""The long measurements (benchmarks/ablate_pretrain.py, benchmarks/budget_curve.py,
benchmarks/finetune_grid.py) keep each finished row in a results file at once, so that a table
fills over several sittings."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from tests.support import REPO_ROOT


def _script(name: str):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def ablation():
    return _script("ablate_pretrain")


@pytest.fixture(scope="module")
def curve():
    return _script("budget_curve")


@pytest.fixture(scope="module")
def grid():
    return _script("finetune_grid")


def _row(ablation, name: str, scratch: str = "") -> dict[str, str]:
    row = dict.fromkeys(ablation.FIELDS, "1")
    return row | {
        "variant": name,
        "date": "2026-11-27",
        "machine": "vm (x86_64)",
        "budget_s": "330",
        "pretrained": "0.314",
        "pretrained_std": "0.017",
        "scratch": scratch,
        "scratch_std": "0.012" if scratch else "",
        "nsp_accuracy": "" if name == "nsp_off" else "0.685",
    }


def test_rows_round_trip_in_variant_order(ablation, tmp_path):
    path = tmp_path / "ablate.tsv"
    rows = {"nsp_off": _row(ablation, "nsp_off"), "default": _row(ablation, "default", "0.258")}
    ablation.write_rows(path, rows)
    assert ablation.read_rows(path) == rows
    assert [line.split("\t")[0] for line in path.read_text().splitlines()[1:]] == [
        "default",
        "nsp_off",
    ]
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind


def test_the_table_lists_every_variant_and_borrows_the_default_scratch(ablation):
    rows = {"default": _row(ablation, "default", "0.258"), "nsp_off": _row(ablation, "nsp_off")}
    text = ablation.table(rows)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    assert "= default (0.258)" in lines["nsp_off"]
    assert "0.258 ± 0.012" in lines["default"]
    assert "| – |" in lines["nsp_off"]  # no NSP head, no NSP accuracy
    unmeasured = [name for name in ablation.VARIANTS if name not in rows]
    assert all("not measured yet" in lines[name] for name in unmeasured)
    assert f"2 of {len(ablation.VARIANTS)} variants" in text
    assert "5.5-5.5 min" in text


def test_the_difference_from_the_default_is_bold_only_beyond_two_standard_errors(ablation):
    default = _row(ablation, "default") | {"pretrained": "0.360", "pretrained_std": "0.003"}
    close = _row(ablation, "lr_3e-3") | {"pretrained": "0.375", "pretrained_std": "0.015"}
    far = _row(ablation, "mask_30") | {"pretrained": "0.400", "pretrained_std": "0.015"}
    # one row's small std does not make its neighbours significant: the std is pooled
    std = ablation.pooled_std([default, close, far])
    assert std == pytest.approx(((0.003**2 + 2 * 0.015**2) / 3) ** 0.5)
    twin = far | {"variant": "original"}  # a copied row counts once
    assert ablation.pooled_std([default, close, far, twin]) == pytest.approx(std)
    # se = std * sqrt(2 / 3) = 0.0102
    assert ablation.versus_default(close, default, 3, std) == "+0.015 ± 0.010"
    assert ablation.versus_default(far, default, 3, std) == "**+0.040 ± 0.010**"
    assert ablation.versus_default(default, default, 3, std) == "0"
    assert ablation.versus_default(close, None, 3, std) == "–"
    text = ablation.table({"default": default, "mask_30": far, "lr_3e-3": close}, seeds=3)
    assert (
        "**+0.040 ± 0.010**" in text and "3 seeds" in text and "pooled over the rows, 0.012" in text
    )


def test_a_file_that_is_not_a_results_file_is_one_line_naming_it(ablation, tmp_path):
    path = tmp_path / "other.tsv"
    path.write_text("variant\tscore\ndefault\t0.3\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"other\.tsv: not an ablation results file"):
        ablation.read_rows(path)


def test_only_rows_that_keep_the_step_cost_skip_calibration(ablation):
    base = ablation.read_params(REPO_ROOT)
    same = {name for name in ablation.VARIANTS if ablation.same_cost(name, base)}
    assert {"default", "lr_3e-4", "lr_3e-3", "one_cycle", "loss_global_batch"} <= same
    assert not same & {"nsp_off", "mask_30", "seq_64", "shape_small", "global_batch_16"}
    # the preset changes the default only where params.yaml differs from it
    assert ("original" in same) == (set(ablation.changes("original", base)) <= ablation.SAME_COST)


def test_a_variant_that_changes_the_default_as_another_does_is_that_run(ablation):
    base = ablation.read_params(REPO_ROOT)
    micro = base | {"pretrain": base["pretrain"] | {"mlm_loss_normalisation": "micro_batch"}}
    assert ablation.changes("original", micro) == {
        "pretrain.mlm_loss_normalisation": "global_batch"
    }
    assert ablation.twin("original", micro, ablation.VARIANTS) == "loss_global_batch"
    assert ablation.twin("nsp_off", micro, ablation.VARIANTS) is None
    rows = {"loss_global_batch": _row(ablation, "loss_global_batch")}
    text = ablation.table(rows, 3, micro)
    assert "| original (= loss_global_batch) | not measured yet |" in text
    # without NSP in the default, the preset's nsp: true is a change of its own
    no_nsp = micro | {"examples": micro["examples"] | {"nsp": False}}
    assert ablation.twin("original", no_nsp, ablation.VARIANTS) is None


def test_the_default_row_reads_the_committed_run(ablation):
    found = {
        "pretrain": json.loads((REPO_ROOT / "metrics/pretrain.json").read_text()),
        "eval": json.loads((REPO_ROOT / "metrics/eval.json").read_text()),
    }
    row = ablation.make_row("default", 1400, found, "abc1234", "2026-11-27", "the committed run")
    heldout = found["pretrain"]["heldout"]
    assert row["mlm_accuracy"] == f"{heldout['mlm_accuracy']:.3f}"
    assert row["budget_s"] == f"{found['pretrain']['train']['seconds']:.0f}"
    assert float(row["pretrained"]) == pytest.approx(
        found["eval"]["average"]["test"]["pretrained"]["mean"], abs=5e-4
    )
    assert row["scratch"]  # the committed run fine-tunes from scratch too
    assert set(row) == set(ablation.FIELDS)


def _budget(curve, minutes: float, pretrained: float) -> dict[str, str]:
    row = dict.fromkeys(curve.HEADER, "0.0100")
    return row | {
        "minutes": f"{minutes:g}",
        "steps": str(int(minutes * 260)),
        "pretrained": f"{pretrained:.4f}",
        "bag_of_words": "0.4320",
    }


def test_budget_rows_round_trip_sorted_and_the_crossing_is_the_first_budget_reaching_bow(
    curve, tmp_path
):
    path = tmp_path / "budget_curve.tsv"
    rows = {20.0: _budget(curve, 20, 0.44), 5.0: _budget(curve, 5, 0.31)}
    curve.write_rows(path, rows)
    assert curve.read_rows(path) == rows
    assert [line.split("\t")[0] for line in path.read_text().splitlines()] == ["minutes", "5", "20"]
    assert curve.crossing(rows) == 20.0
    rows[40.0] = _budget(curve, 40, 0.43)
    assert curve.crossing(rows) == 20.0
    assert curve.crossing({5.0: _budget(curve, 5, 0.31)}) is None


def test_a_file_that_is_not_a_budget_curve_is_one_line_naming_it(curve, tmp_path):
    path = tmp_path / "plot.tsv"
    path.write_text("minutes\tscore\n5\t0.3\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"plot\.tsv: not a budget curve"):
        curve.read_rows(path)


def test_the_curve_is_drawn_as_a_png(curve, tmp_path):
    figure = tmp_path / "img" / "curve.png"
    curve.plot({5.0: _budget(curve, 5, 0.31), 10.0: _budget(curve, 10, 0.35)}, figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _setting(grid, lr: float, batch: int, epochs: int, dropout: float, dev: float):
    section = grid.read_params(REPO_ROOT)["finetune"]
    changes = {"learning_rate": lr, "batch_size": batch, "epochs": epochs}
    settings = grid.recipe(
        section, changes | {"hidden_dropout": dropout, "attention_dropout": dropout}
    )
    averages = {("pretrained", "dev"): (dev, 0.01), ("pretrained", "test"): (dev - 0.02, 0.01)}
    return grid.make_row(settings, averages, 63 * epochs, "965ba3aff3c4")


def test_grid_rows_are_known_by_their_full_recipe_and_the_default_is_bold(grid, tmp_path):
    path = tmp_path / "finetune_grid.tsv"
    old = _setting(grid, 3e-4, 16, 3, 0.1, 0.332)
    new = _setting(grid, 1e-3, 32, 6, 0.0, 0.378)
    rows = {grid.key(new): new, grid.key(old): old}
    grid.write_rows(path, rows)
    kept = grid.read_rows(path)
    assert kept == rows
    assert grid.key(new) == ("0.001", "32", "6", "0", "0", "cls", "965ba3aff3c4")
    lines = grid.table(kept, new).splitlines()
    body = [line for line in lines if line.startswith("| 0") or line.startswith("| **")]
    # dropout shown once when hidden and attention agree; the old recipe first
    assert body[0].startswith("| 0.0003 | 16 | 3 | 0.1 | cls | 189 | 0.332 ± 0.010 |")
    assert body[1].startswith("| **0.001** | **32** | **6** | **0** |")
    assert "scratch" not in lines[2]  # no row measured scratch: no scratch columns


def test_a_file_that_is_not_a_grid_results_file_is_one_line_naming_it(grid, tmp_path):
    path = tmp_path / "grid.tsv"
    path.write_text("lr\tbatch\n0.001\t32\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"grid\.tsv: not a fine-tuning grid results file"):
        grid.read_rows(path)
