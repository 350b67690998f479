"""The Chinese pipeline end to end: params-zh.yaml on data/raw/corpus-zh, up to pretrain (or on
to evaluate), in a temporary git copy of the project with real DVC, DeepSpeed and MLflow.

Runs `dvc repro pretrain` (ingest, vocab, examples with jieba whole-word masking, pretrain) with
params.yaml overlaid by params-zh.yaml, then prints each stage's wall time, the held-out [UNK]
rate of the vocabulary, the instances made, the held-out masked-LM accuracy against the unigram
baseline (metrics/pretrain.json), and the top predictions of transformers' fill-mask pipeline on
the exported model for Chinese sentences (one [MASK] per sentence). With `--to evaluate` it runs
`dvc repro evaluate` instead (also finetune@quotesource, the Chinese task) and prints the task's
test scores of pretrained, scratch, majority and bag-of-words with their standard errors
(metrics/eval.json).

    python benchmarks/bench_chinese_pipeline.py            # the whole corpus: ~8 min on 2 cores
    python benchmarks/bench_chinese_pipeline.py --to evaluate  # and fine-tuning: ~10 min
    python benchmarks/bench_chinese_pipeline.py --tiny     # 60 documents a file, 20 steps (~2 min)
    python benchmarks/bench_chinese_pipeline.py --keep DIR # keep the copy in DIR

--tiny with --to evaluate fine-tunes one seed for one epoch on 300 training quotations (a check
that the chain runs, ~3 min on the shared 2-core machine; its scores mean nothing). The full
`--to evaluate` adds finetune@quotesource (3 seeds x 2 inits x 3 epochs on 1,448 quotations,
~1.5 min by the English tasks' stage times) and evaluate to the ~8 min.

The full run's duration is an estimate from the English pipeline's stage times (pretrain is
1,400 steps of the default small model, ~2.3 passes over the ~19 k Chinese instances); the
--tiny run took ~5 min on the shared 2-core machine. The first four sentences are lines of the
corpus (the model may have seen them in training: a memory check), the last is not.
"""

from __future__ import annotations

import argparse
import json
import lzma
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402

from tests.support import copy_project, stage_env  # noqa: E402

RUNNING = re.compile(r"Running stage '([^']+)'")
FILL_MASK_SENTENCES = [
    "床前明月光，疑是地上[MASK]。",
    "举头望明月，低头思故[MASK]。",
    "请接受这一事实，并保持礼[MASK]。",
    "天下有道，却走马以[MASK]。",
    "今天天气很[MASK]，我们出去走走吧。",  # not in the corpus
]


def merged_params(tiny: bool) -> dict:
    """params.yaml with params-zh.yaml's keys over it (and, for --tiny, a 20-step pretrain and
    one short fine-tuning run per init)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section, overrides in yaml.safe_load((ROOT / "params-zh.yaml").read_text()).items():
        params[section] = params[section] | overrides  # finetune.tasks: the Chinese task only
    if tiny:  # a held-out split of a few documents has characters training never saw
        params["vocab"]["max_unk_rate"] = 1.0
        params["examples"]["dupe_factor"] = 2
        params["pretrain"] |= {"max_steps": 20, "warmup_steps": 5, "checkpoint_every": 10}
        params["finetune"] |= {"seeds": [0], "epochs": 1}
        for spec in params["finetune"]["tasks"].values():
            spec["max_train_examples"] = 300
    return params


def make_chinese_project(destination: Path, tiny: bool) -> Path:
    """A git copy of the project whose params.yaml is the Chinese one; --tiny: a corpus of the
    first 60 documents of each file."""
    copy_project(destination)
    (destination / "params.yaml").write_text(yaml.safe_dump(merged_params(tiny), sort_keys=False))
    if tiny:
        for path in sorted((destination / "data/raw/corpus-zh").glob("*.txt.xz")):
            documents = lzma.decompress(path.read_bytes()).decode("utf-8").split("\n\n")[:60]
            path.write_bytes(lzma.compress(("\n\n".join(documents).rstrip("\n") + "\n").encode()))
    return destination


def run_stages(project: Path, target: str) -> dict[str, float]:
    """`dvc repro <target>` in `project`; the wall time of each stage that ran."""
    start = last = time.perf_counter()
    times: dict[str, float] = {}
    current = None
    process = subprocess.Popen(
        ["dvc", "repro", target], cwd=project, env=stage_env(project), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        if match := RUNNING.search(line):
            now = time.perf_counter()
            if current:
                times[current] = now - last
            current, last = match.group(1), now
    if process.wait() != 0:
        sys.stderr.writelines(output[-20:])
        raise SystemExit(f"dvc repro {target} failed in {project} (exit {process.returncode})")
    if current:
        times[current] = time.perf_counter() - last
    times["total"] = time.perf_counter() - start
    return times


def fill_mask(model_dir: Path) -> list[tuple[str, list[str]]]:
    """transformers' fill-mask pipeline on the exported model: the top 5 tokens per sentence."""
    from transformers import pipeline

    fill = pipeline("fill-mask", model=str(model_dir), top_k=5)
    return [(text, [guess["token_str"] for guess in fill(text)]) for text in FILL_MASK_SENTENCES]


def print_evaluation(evaluation: dict) -> None:
    """Each task's headline scores (metrics/eval.json): mean ± standard error per model."""
    split = evaluation["headline_split"]
    models = [*evaluation["inits"], *evaluation.get("baselines", [])]
    print(f"| task ({split}) | metric | {' | '.join(models)} | at floor |")
    print(f"|---|---|{'---|' * len(models)}---|")
    for name, task in evaluation["tasks"].items():
        cells = [
            f"{task[split][model]['score']['mean']:.3f} ± {task['standard_error'][model]:.3f}"
            for model in models
        ]
        print(f"| {name} | {task['primary_metric']} | {' | '.join(cells)} | {task['at_floor']} |")
    print(
        f"(± the standard error: bootstrap over the {split} rows, plus the spread of the mean over "
        f"seeds {evaluation['seeds']} for the fine-tuned models)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 60-document corpus, 20 steps")
    parser.add_argument("--keep", type=Path, help="build the copy here and keep it")
    parser.add_argument(
        "--to", choices=["pretrain", "evaluate"], default="pretrain", help="the last stage run"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bertforge-zh-") as temporary:
        project = make_chinese_project(args.keep or Path(temporary) / "project", args.tiny)
        times = run_stages(project, args.to)
        stages = ["ingest", "vocab", "examples", "pretrain"] + ["eval"] * (args.to == "evaluate")
        metrics = {
            stage: json.loads((project / f"metrics/{stage}.json").read_text()) for stage in stages
        }
        guesses = fill_mask(project / "data/pretrained/model")
    heldout = metrics["pretrain"]["heldout"]
    print(
        f"{machine()}, Python "
        f"{platform.python_version()}, {date.today()}; corpus: data/raw/corpus-zh"
        f"{' (tiny: 60 documents per file)' if args.tiny else ''}; params: params-zh.yaml"
    )
    print()
    print("| stage | wall time (s) |")
    print("|---|---|")
    for stage, seconds in times.items():
        print(f"| {stage} | {seconds:.1f} |")
    print()
    print(f"vocab: {metrics['vocab']['vocab_size']} tokens, held-out [UNK] rate "
          f"{metrics['vocab']['unk_rate']:.4%}")  # fmt: skip
    print(f"examples: {json.dumps(metrics['examples'], sort_keys=True)}")
    print(
        f"pretrain: held-out MLM accuracy {heldout['mlm_accuracy']:.4f} vs unigram "
        f"{heldout['unigram_mlm_accuracy']:.4f} (x{heldout['mlm_accuracy_over_unigram']:.2f}); "
        f"MLM loss {heldout['mlm_loss']:.3f} vs unigram {heldout['unigram_mlm_loss']:.3f}"
    )
    print()
    print("| fill-mask sentence | top 5 |")
    print("|---|---|")
    for text, tokens in guesses:
        print(f"| {text} | {' '.join(tokens)} |")
    if "eval" in metrics:
        print()
        print_evaluation(metrics["eval"])


if __name__ == "__main__":
    main()
