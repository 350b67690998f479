"""The long measurements (benchmarks/ablate_pretrain.py, benchmarks/budget_curve.py,
benchmarks/finetune_grid.py) keep each finished row in a results file at once, so that a table
fills over several sittings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, benchmark_module


@pytest.fixture(scope="module")
def ablation():
    return benchmark_module("ablate_pretrain")


@pytest.fixture(scope="module")
def curve():
    return benchmark_module("budget_curve")


@pytest.fixture(scope="module")
def grid():
    return benchmark_module("finetune_grid")


def _row(ablation, name: str, scratch: str = "", run: str | None = None) -> dict[str, str]:
    row = dict.fromkeys(ablation.FIELDS, "1")
    return row | {
        "variant": name,
        "run": run or f"run-of-{name}",
        "date": "2026-11-27",
        "machine": "vm (x86_64)",
        "budget_s": "330",
        "pretrained": "0.314",
        "pretrained_std": "0.017",
        "scratch": scratch,
        "scratch_std": "0.012" if scratch else "",
        "nsp_accuracy": "" if name == "nsp_off" else "0.685",
    }


def _base(ablation, normalisation: str = "global_batch") -> dict:
    """params.yaml with the default's loss normalisation set (the first ablation's rows were
    measured at micro_batch; the default is global_batch since)."""
    base = ablation.read_params(REPO_ROOT)
    return base | {"pretrain": base["pretrain"] | {"mlm_loss_normalisation": normalisation}}


def _measured(ablation, base: dict, rows: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """`rows` (by variant) as the results file holds them: by the run each variant makes."""
    keys = {name: ablation.run_key(name, base) for name in rows}
    return {keys[name]: row | {"run": keys[name]} for name, row in rows.items()}


def test_rows_round_trip_in_variant_order(ablation, tmp_path):
    path = tmp_path / "ablate.tsv"
    rows = {
        "run-of-nsp_off": _row(ablation, "nsp_off"),
        "run-of-default": _row(ablation, "default", "0.258"),
    }
    ablation.write_rows(path, rows)
    assert ablation.read_rows(path) == rows
    assert [line.split("\t")[0] for line in path.read_text().splitlines()[1:]] == [
        "default",
        "nsp_off",
    ]
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind


def _lines(text: str) -> dict[str, str]:
    return {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}


def test_the_table_lists_every_variant_and_borrows_the_default_scratch(ablation):
    base = _base(ablation)
    rows = {"default": _row(ablation, "default", "0.258"), "nsp_off": _row(ablation, "nsp_off")}
    text = ablation.table(_measured(ablation, base, rows), base)
    lines = _lines(text)
    assert "= default (0.258)" in lines["nsp_off"]
    assert "0.258 ± 0.012" in lines["default"]
    assert "| – |" in lines["nsp_off"]  # no NSP head, no NSP accuracy
    unmeasured = [name for name in lines if name in ablation.VARIANTS and name not in rows]
    assert unmeasured and all("not measured yet" in lines[name] for name in unmeasured)
    # three variants have a row: original is the default's run
    assert f"3 of {len(ablation.VARIANTS)} variants" in text
    assert "5.5-5.5 min" in text


def test_the_difference_from_the_default_is_bold_only_beyond_two_standard_errors(ablation):
    default = _row(ablation, "default") | {"pretrained": "0.360", "pretrained_std": "0.003"}
    close = _row(ablation, "lr_3e-3") | {"pretrained": "0.375", "pretrained_std": "0.015"}
    far = _row(ablation, "mask_30") | {"pretrained": "0.400", "pretrained_std": "0.015"}
    # one row's small std does not make its neighbours significant: the std is pooled
    std = ablation.pooled_std([default, close, far])
    assert std == pytest.approx(((0.003**2 + 2 * 0.015**2) / 3) ** 0.5)
    shared = far | {"variant": "original"}  # one run serving two variants counts once
    assert ablation.pooled_std([default, close, far, shared]) == pytest.approx(std)
    # without replicates of the pretraining a row's std is the fine-tuning seeds' std / sqrt(3),
    # and the difference's standard error sqrt(2) times that: 0.0102
    spread, source = ablation.row_spread({"default": default}, 3, std)
    assert spread == pytest.approx(std / 3**0.5) and "pooled over the rows" in source
    assert ablation.versus_default(close, default, spread) == "+0.015 ± 0.010"
    assert ablation.versus_default(far, default, spread) == "**+0.040 ± 0.010**"
    assert ablation.versus_default(default, default, spread) == "0"
    assert ablation.versus_default(close, None, spread) == "–"
    base = _base(ablation)
    rows = _measured(ablation, base, {"default": default, "mask_30": far, "lr_3e-3": close})
    text = ablation.table(rows, base, seeds=3)
    assert (
        "**+0.040 ± 0.010**" in text and "3 seeds" in text and "pooled over the rows, 0.012" in text
    )


def test_replicates_of_the_pretraining_widen_every_rows_error_when_they_spread_more(ablation):
    """The default's params with other pretraining seeds: the std of their averages (one
    pretraining draw each) sets the standard error when it exceeds the fine-tuning seeds'."""
    default = _row(ablation, "default") | {"pretrained": "0.347", "pretrained_std": "0.020"}
    seed_1 = _row(ablation, "pretrain_seed_1") | {"pretrained": "0.367", "pretrained_std": "0.020"}
    seed_2 = _row(ablation, "pretrain_seed_2") | {"pretrained": "0.327", "pretrained_std": "0.020"}
    found = {"default": default, "pretrain_seed_1": seed_1, "pretrain_seed_2": seed_2}
    spread, source = ablation.row_spread(found, 3, 0.020)
    assert spread == pytest.approx(0.020)  # the three averages' std, above 0.020 / sqrt(3)
    assert "over 3 pretraining seeds, 0.020 (0.347, 0.367, 0.327)" in source
    far = _row(ablation, "mask_30") | {"pretrained": "0.387"}
    # +0.040: 2.4 standard errors by the fine-tuning seeds alone (0.016), 1.4 by the replicates
    assert ablation.versus_default(far, default, spread) == "+0.040 ± 0.028"
    # replicates that agree closer than the fine-tuning seeds leave the fine-tuning error
    close = {name: row | {"pretrained": "0.347"} for name, row in found.items()}
    assert ablation.row_spread(close, 3, 0.020)[0] == pytest.approx(0.020 / 3**0.5)
    assert ablation.same_cost("pretrain_seed_1", ablation.read_params(REPO_ROOT))
    base = _base(ablation)
    text = ablation.table(_measured(ablation, base, found | {"mask_30": far}), base, seeds=3)
    assert "+0.040 ± 0.028" in text and "3 pretraining seeds" in text


def test_a_file_that_is_not_a_results_file_is_one_line_naming_it(ablation, tmp_path):
    path = tmp_path / "other.tsv"
    path.write_text("variant\tscore\ndefault\t0.3\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"other\.tsv: not an ablation results file"):
        ablation.read_rows(path)


def test_only_rows_that_keep_the_step_cost_skip_calibration(ablation):
    base = ablation.read_params(REPO_ROOT)
    same = {name for name in ablation.VARIANTS if ablation.same_cost(name, base)}
    assert {"default", "lr_3e-4", "lr_3e-3", "one_cycle"} <= same
    assert not same & {"nsp_off", "mask_30", "seq_64", "shape_small", "global_batch_16"}
    # a vocabulary changes the MLM head's cost and what scratch fine-tunes, as a shape does
    assert not same & {"vocab_8k", "vocab_32k"}
    scratch_too = {name for name in ablation.VARIANTS if ablation.changes_scratch(name)}
    assert {"shape_small", "shape_wide", "vocab_8k", "vocab_32k"} <= scratch_too
    assert not scratch_too & {"nsp_off", "lr_3e-3", "pretrain_seed_1", "pretrain_seed_2"}
    # a combination costs what its costliest change costs: one-cycle with 64-token sequences
    # calibrates as the sequences need
    assert "nsp_off+seq_64+one_cycle" not in same
    # the preset changes the default only where params.yaml differs from it
    assert ("original" in same) == (set(ablation.changes("original", base)) <= ablation.SAME_COST)


def test_variants_that_run_the_same_params_share_one_row(ablation, capsys):
    base = _base(ablation, "global_batch")  # the original preset in every knob it sets
    keys = {name: ablation.run_key(name, base) for name in ablation.VARIANTS}
    assert len(set(keys.values())) == len(keys) - 1  # only original and the default meet
    assert keys["original"] == keys["default"] != keys["loss_micro_batch"]
    assert ablation.same_run("original", keys) == "default"
    assert ablation.same_run("default", keys) is None  # the default is its own
    assert ablation.same_run("nsp_off", keys) is None
    rows = _measured(ablation, base, {"default": _row(ablation, "default")})
    lines = _lines(ablation.table(rows, base))
    assert "not measured yet" not in lines["original (= default)"]
    # one run is measured for both, and a kept row serves every variant that runs it
    assert ablation.to_measure(["default", "original", "nsp_off"], [], {}, keys) == [
        "default",
        "nsp_off",
    ]
    renamed = {key: row | {"variant": "original"} for key, row in rows.items()}
    assert ablation.to_measure(["default", "nsp_off"], [], renamed, keys) == ["nsp_off"]
    assert "default: kept from 2026-11-27, measured as original" in capsys.readouterr().err
    assert ablation.to_measure(["original"], ["original"], rows, keys) == ["original"]  # --rerun
    # without NSP in the default, the preset's nsp: true is a change of its own
    no_nsp = base | {"examples": base["examples"] | {"nsp": False}}
    assert ablation.run_key("original", no_nsp) != ablation.run_key("default", no_nsp)
    # the budget and a smoke run's overrides are part of the run
    assert ablation.run_key("default", base, minutes=10) != keys["default"]
    assert ablation.run_key("default", base, {"pretrain.max_steps": 10}) != keys["default"]


def test_rows_measured_at_a_previous_default_serve_the_runs_that_recur(ablation):
    micro, whole = _base(ablation, "micro_batch"), _base(ablation, "global_batch")
    # the previous default's original run is the current default; its default, loss_micro_batch
    assert ablation.run_key("original", micro) == ablation.run_key("default", whole)
    assert ablation.run_key("default", micro) == ablation.run_key("loss_micro_batch", whole)
    old = _measured(
        ablation,
        micro,
        {
            "default": _row(ablation, "default", "0.356") | {"pretrained": "0.361"},
            "original": _row(ablation, "original") | {"pretrained": "0.357"},
            "nsp_off": _row(ablation, "nsp_off"),
        },
    )
    lines = _lines(ablation.table(old, whole))
    assert "0.357 ± 0.017" in lines["default"]
    assert "0.357 ± 0.017" in lines["original (= default)"]
    assert "0.361 ± 0.017" in lines["loss_micro_batch"]
    # nsp_off was one change from the previous default: two from this one, so not its row
    assert "not measured yet" in lines["nsp_off"]


def test_the_default_row_reads_the_committed_run(ablation):
    found = {
        "pretrain": json.loads((REPO_ROOT / "metrics/pretrain.json").read_text()),
        "eval": json.loads((REPO_ROOT / "metrics/eval.json").read_text()),
    }
    row = ablation.make_row(
        "default", "0123456789ab", 1400, found, "abc1234", "2026-11-27", "the committed run"
    )
    heldout = found["pretrain"]["heldout"]
    assert row["mlm_accuracy"] == f"{heldout['mlm_accuracy']:.3f}"
    assert row["budget_s"] == f"{found['pretrain']['train']['seconds']:.0f}"
    assert float(row["pretrained"]) == pytest.approx(
        found["eval"]["average"]["test"]["pretrained"]["mean"], abs=5e-4
    )
    assert row["scratch"]  # the committed run fine-tunes from scratch too
    assert set(row) == set(ablation.FIELDS)


def _budget(curve, minutes: float, pretrained: float, mlm_ratio: str = "") -> dict[str, str]:
    row = dict.fromkeys(curve.HEADER, "0.0100")
    return row | {
        "minutes": f"{minutes:g}",
        "steps": str(int(minutes * 260)),
        "pretrained": f"{pretrained:.4f}",
        "scratch": "0.3600",
        "bag_of_words": "0.4320",
        "mlm_accuracy": "0.1500" if mlm_ratio else "",
        "mlm_over_unigram": mlm_ratio,
        "nsp_accuracy": "0.7000" if mlm_ratio else "",
        "settings": "",
    }


def test_budget_rows_round_trip_sorted_and_the_crossing_is_the_first_budget_reaching_bow(
    curve, tmp_path
):
    path = tmp_path / "budget_curve.tsv"
    rows = {20.0: _budget(curve, 20, 0.44), 5.0: _budget(curve, 5, 0.31)}
    curve.write_rows(path, rows)
    assert curve.read_rows(path) == rows
    assert [line.split("\t")[0] for line in path.read_text().splitlines()] == ["minutes", "5", "20"]
    assert curve.first_meeting(rows, "reaches_bag_of_words") == 20.0
    rows[40.0] = _budget(curve, 40, 0.43)
    assert curve.first_meeting(rows, "reaches_bag_of_words") == 20.0
    assert curve.first_meeting({5.0: _budget(curve, 5, 0.31)}, "reaches_bag_of_words") is None


def test_each_target_is_met_from_the_first_budget_that_meets_it(curve):
    rows = {
        5.0: _budget(curve, 5, 0.37, "2.30"),  # +0.01 over scratch: within 3 seed stds (0.03)
        10.0: _budget(curve, 10, 0.40, "2.80"),  # +0.04: beyond them, still under bag-of-words
        20.0: _budget(curve, 20, 0.44, "3.10"),
        40.0: _budget(curve, 40, 0.52),  # its MLM figures not measured
    }
    assert curve.first_meeting(rows, "beats_scratch") == 10.0
    assert curve.first_meeting(rows, "reaches_bag_of_words") == 20.0
    assert curve.first_meeting(rows, "mlm_3x_unigram") == 20.0
    assert curve.targets(rows[40.0])["mlm_3x_unigram"] is None
    # the larger of the two seed stds counts
    noisy = rows[10.0] | {"scratch_std": "0.0200"}
    assert not curve.targets(noisy)["beats_scratch"]


def test_a_row_records_its_settings_and_is_pretrained_again_under_them(curve):
    settings = {"pretrain.mlm_loss_normalisation": "micro_batch", "pretrain.betas": [0.9, 0.98]}
    cell = curve.settings_cell(settings)
    assert cell == "pretrain.betas=[0.9, 0.98]; pretrain.mlm_loss_normalisation=micro_batch"
    row = _budget(curve, 20, 0.44) | {"steps": "4947", "settings": cell}
    assert curve.row_settings(row) == settings
    assert curve.settings_cell({}) == "" and curve.row_settings(_budget(curve, 5, 0.3)) == {}
    base = curve.read_params(REPO_ROOT)
    overrides = curve.row_overrides(base, {}, row)
    assert overrides == settings | {
        "pretrain.max_steps": 4947,
        "pretrain.warmup_steps": base["pretrain"]["warmup_steps"],
        "pretrain.checkpoint_every": 4947,
    }
    # warmup is at most a tenth of the steps
    short = curve.row_overrides(base, {}, row | {"steps": "50"})
    assert short["pretrain.warmup_steps"] == 5


def test_the_table_marks_each_target_and_bolds_pretrained_where_it_reaches_bag_of_words(curve):
    rows = {5.0: _budget(curve, 5, 0.37, "2.30"), 40.0: _budget(curve, 40, 0.52)}
    lines = curve.table(rows).splitlines()
    assert lines[0].endswith(" | " + " | ".join(curve.TARGETS.values()) + " |")
    assert lines[2] == (
        "| 5 min | 1,300 | 0.370 ± 0.010 | 0.360 ± 0.010 | 0.432 | 0.150 (2.30×) | no | no | no |"
    )
    assert lines[3] == (
        "| 40 min | 10,400 | **0.520 ± 0.010** | 0.360 ± 0.010 | 0.432 | – | yes | yes | – |"
    )


def test_the_docs_table_is_the_kept_curve(curve):
    """docs/finetune.md's table is written from reports/budget_curve.tsv (--write-docs)."""
    docs = curve.DOCS.read_text(encoding="utf-8")
    block = docs.split("<!-- budget_curve:begin -->\n", 1)[1].split("<!-- budget_curve:end -->")[0]
    assert block == curve.table(curve.read_rows(curve.OUTPUT))


def _run_curve(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks/budget_curve.py"), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_malformed_setting_is_one_line_naming_it(tmp_path):
    result = _run_curve("--set", "pretrain.lr", "--output", str(tmp_path / "curve.tsv"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --set 'pretrain.lr': expected KEY=VALUE, e.g. pretrain.lr=0.002"
    )


def test_a_setting_whose_value_is_not_yaml_is_one_line_naming_it(tmp_path):
    result = _run_curve("--set", "pretrain.betas=[0.9,", "--output", str(tmp_path / "curve.tsv"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --set 'pretrain.betas=[0.9,': the VALUE is not YAML (e.g. 0.002, true, [1, 2])"
    )


def test_a_replicate_takes_each_budgets_steps_from_the_kept_curve(curve, tmp_path):
    """--steps-of: the kept curve's steps (another pretraining seed, another machine), not a
    calibration; a budget the kept curve lacks is one line and exit 1, before any run."""
    kept = {5.0: _budget(curve, 5, 0.34), 20.0: _budget(curve, 20, 0.45)}
    assert curve.budget_steps(20.0, None, kept) == 20 * 260
    assert curve.budget_steps(20.0, 0.25, None) == 4800  # calibrated: 20 min at 0.25 s a step
    path = tmp_path / "kept.tsv"
    curve.write_rows(path, kept)
    output = tmp_path / "replicate.tsv"
    result = _run_curve("--minutes", "10", "--steps-of", str(path), "--output", str(output))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: --steps-of {path}: no 10-minute row (it has 5, 20)"
    assert not output.exists()


def _refusal(curve, path: Path, minutes: float, settings: str) -> str:
    """The one line `--minutes 10` prints for a file holding one row (`minutes`, `settings`);
    the file is left as it was."""
    curve.write_rows(path, {minutes: _budget(curve, minutes, 0.36) | {"settings": settings}})
    before = path.read_bytes()
    result = _run_curve("--minutes", "10", "--output", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and path.read_bytes() == before
    return lines[0]


def test_a_kept_row_whose_settings_do_not_parse_is_one_line_naming_the_file_and_row(
    curve, tmp_path
):
    path = tmp_path / "curve.tsv"
    assert _refusal(curve, path, 10.0, "pretrain.lr 0.002") == (
        f"error: {path}: the 10-minute row's settings 'pretrain.lr 0.002': expected KEY=VALUE, "
        "e.g. pretrain.lr=0.002"
    )


def test_a_budget_under_other_settings_than_the_files_rows_is_refused_before_running(
    curve, tmp_path
):
    path = tmp_path / "curve.tsv"
    assert _refusal(curve, path, 5.0, "pretrain.lr=0.002") == (
        f"error: {path}: its rows were measured with settings pretrain.lr=0.002, this run with"
        " the default settings (no --set); use another --output"
    )
    before = path.read_bytes()
    # under the same settings, a kept budget is only printed: nothing runs, and the docs' figure
    # (the default --output's) is left alone
    docs_figure = curve.FIGURE.read_bytes()
    kept = _run_curve("--minutes", "5", "--set", "pretrain.lr=0.002", "--output", str(path))
    assert kept.returncode == 0, kept.stderr
    assert "5 min: kept" in kept.stderr and path.read_bytes() == before
    assert curve.FIGURE.read_bytes() == docs_figure


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


def test_rows_of_two_encoders_each_name_theirs_and_scratch_gets_its_columns(grid):
    pretrained = _setting(grid, 1e-3, 32, 6, 0.0, 0.378)
    scratch = pretrained | {
        "encoder": "0123456789ab",
        "pretrained_dev": "",
        "pretrained_dev_std": "",
        "pretrained_test": "",
        "pretrained_test_std": "",
        "scratch_dev": "0.3890",
        "scratch_dev_std": "0.0030",
        "scratch_test": "0.3560",
        "scratch_test_std": "0.0050",
    }
    rows = {grid.key(row): row for row in (pretrained, scratch)}
    lines = grid.table(rows, pretrained).splitlines()
    assert lines[2].endswith("| scratch dev | scratch test | encoder |")
    # the same recipe: ordered by encoder
    body = [line for line in lines if line.startswith("| **")]
    assert body[0].endswith(
        "| **–** | **–** | **0.389 ± 0.003** | **0.356 ± 0.005** | **0123456789ab** |"
    )
    assert body[1].endswith(
        "| **0.378 ± 0.010** | **0.358 ± 0.010** | **–** | **–** | **965ba3aff3c4** |"
    )
    one_encoder = grid.table({grid.key(pretrained): pretrained}, pretrained).splitlines()
    assert "encoder" not in one_encoder[2]  # one encoder: named once, above the table


def test_a_file_that_is_not_a_grid_results_file_is_one_line_naming_it(grid, tmp_path):
    path = tmp_path / "grid.tsv"
    path.write_text("lr\tbatch\n0.001\t32\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"grid\.tsv: not a fine-tuning grid results file"):
        grid.read_rows(path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--write-docs"], "error: --write-docs with --smoke: a smoke run's numbers mean nothing"),
        (["--model", "data/pretrained/model"], "error: --model is the default encoder"),
    ],
)
def test_the_grid_refuses_a_smoke_run_it_cannot_use_before_running(flags, message):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks/finetune_grid.py"), "--smoke", *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)


def test_a_failed_benchmark_run_keeps_its_project_copy_for_the_log_it_names(tmp_path, monkeypatch):
    """`repro` exits naming a log inside the copy: the copy must outlive the failure."""
    import tempfile

    runs = benchmark_module("pipeline_runs")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(SystemExit), runs.project_copy() as failed:
        sys.exit(f"dvc repro pretrain failed in {failed}")
    assert (failed / "params.yaml").is_file()
    with runs.project_copy() as finished:
        assert (finished / "params.yaml").is_file()
    assert not finished.exists()
