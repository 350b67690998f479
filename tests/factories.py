"""Factories shared by several test modules: one section per stage, appended by its owner."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import random
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from tokenizers import BertWordPieceTokenizer

from bertforge.errors import BertforgeError
from bertforge.evaluate import collect_results, evaluate_results
from bertforge.examples.instances import TokenizedUnit
from bertforge.examples.masking import MaskingRule, create_masked_lm_predictions
from bertforge.examples.params import ExamplesParams
from bertforge.examples.write import check_inputs, write_examples
from bertforge.finetune.params import FinetuneParams
from bertforge.finetune.summary import summarize_seeds
from bertforge.finetune.tasks import TaskData, TaskSpec, load_task
from bertforge.ingest.params import IngestParams, SourceParams
from bertforge.ingest.pipeline import ingest
from bertforge.ingest.sources import resolve_sources
from bertforge.model import (
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    save_pretrained,
)
from bertforge.params import parse
from bertforge.pretrain.data import Collator, ExampleSplit
from bertforge.pretrain.params import PretrainParams, PretrainPaths
from bertforge.registry.summary import EvalSummary, MetricStat
from bertforge.schemas import DOCUMENT_ARROW_SCHEMA, DOCUMENTS, examples_arrow_schema, validate
from bertforge.shards import ShardWriter, iter_batches
from bertforge.tokenizer import BERT_SPECIAL_TOKENS
from bertforge.tokenizer.files import vocab_digest, write_tokenizer
from bertforge.vocab.params import VocabParams
from bertforge.vocab.train import train_tokenizer
from tests.support import REPO_ROOT

# --- ingest ------------------------------------------------------------------------------------

INGEST_PARAMS = {
    "text_column": "text",
    "min_document_chars": 20,
    "min_sentences": 1,
    "max_document_chars": 10_000,
    "language": "en",
    "holdout_fraction": 0.2,
    "seed": 0,
    "num_proc": 1,
    "rows_per_shard": 1000,
}
"""Every `ingest:` key but `sources`, small enough for a test."""


def ingest_params(*sources: dict, **overrides) -> IngestParams:
    """IngestParams reading `sources` (SourceParams fields), INGEST_PARAMS for the rest."""
    values = {**INGEST_PARAMS, **overrides}
    return IngestParams(sources=tuple(SourceParams(**source) for source in sources), **values)


def numbered_document(index: int) -> str:
    """A distinct two-line, three-sentence document for each index."""
    return (
        f"Document number {index} begins here. It talks about topic {index * 7 % 13}, "
        f"at length.\nA second line follows with {index} apples."
    )


def write_txt(path: Path, documents: list[str]) -> Path:
    """A .txt source: the documents separated by blank lines."""
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


def run_ingest(params: IngestParams, output: Path) -> tuple[dict, list[dict], list[dict]]:
    """Ingest into `output`: the metrics, then the train and held-out rows."""
    metrics = ingest(params, resolve_sources(params), output, show_progress=False)
    sides = [
        [row for batch in iter_batches(output / side) for row in batch.to_pylist()]
        for side in ("train", "heldout")
    ]
    return metrics, sides[0], sides[1]


def ingest_error(params: IngestParams, tmp_path: Path) -> str:
    """The message of the BertforgeError that ingesting raises, checked to be one line."""
    with pytest.raises(BertforgeError) as error:
        run_ingest(params, tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message
    return message


INGEST_STAGE = REPO_ROOT / "stages" / "ingest.py"

INGEST_STAGE_PARAMS_YAML = """\
ingest:
  sources:
    - path: corpus/*.txt
  text_column: text
  min_document_chars: 20
  min_sentences: 1
  max_document_chars: 100000
  language: en
  holdout_fraction: 0.2
  seed: 0
  num_proc: {num_proc}
  rows_per_shard: 7
"""


def make_ingest_project(root: Path, num_proc: int = 1) -> Path:
    """A project directory with params.yaml and corpus/a.txt (60 documents) for stages/ingest.py."""
    (root / "corpus").mkdir(parents=True)
    documents = [
        f"Document {index} opens with a sentence. Then it says {index * 3} more things."
        for index in range(60)
    ]
    (root / "corpus" / "a.txt").write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    (root / "params.yaml").write_text(
        INGEST_STAGE_PARAMS_YAML.format(num_proc=num_proc), encoding="utf-8"
    )
    return root


def run_ingest_stage(root: Path) -> subprocess.CompletedProcess:
    """stages/ingest.py as DVC runs it: a subprocess in the project directory."""
    return subprocess.run(
        [sys.executable, str(INGEST_STAGE)], cwd=root, capture_output=True, text=True, timeout=300
    )


def stage_error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The stage's own error lines (MLflow may log INFO lines to stderr before them)."""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return [line for line in lines if line.startswith("error")]


# --- finetune ----------------------------------------------------------------------------------

_POSITIVE = ["good", "great", "fine", "happy", "bright", "warm", "kind", "calm"]
_NEGATIVE = ["bad", "awful", "poor", "sad", "dark", "cold", "cruel", "angry"]
_FILLER = ["the", "a", "day", "film", "meal", "song", "walk", "book", "was", "felt", "very", "so"]
_ANIMALS = ["cat", "dog", "bird", "fish", "horse", "mouse", "snake", "frog"]


def _fixture_sentences(count: int = 400, seed: int = 0) -> list[str]:
    """Text covering every fixture word, to train the tiny WordPiece vocabulary on."""
    rng = random.Random(seed)
    words = _POSITIVE + _NEGATIVE + _FILLER + _ANIMALS
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 10))) for _ in range(count)]


def make_tiny_export(directory: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random BertForPreTraining export with a WordPiece tokenizer: the pretrain stage's shape."""
    directory.mkdir(parents=True, exist_ok=True)
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(
        _fixture_sentences(),
        vocab_size=200,
        min_frequency=1,
        special_tokens=list(BERT_SPECIAL_TOKENS),
    )
    trainer.save_model(str(directory))
    tokenizer = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        save_pretrained(BertForPreTraining(config), directory)
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizerFast", "do_lower_case": True})
    )
    (directory / "special_tokens_map.json").write_text(
        json.dumps(
            {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
            | {"cls_token": "[CLS]", "mask_token": "[MASK]"}
        )
    )
    return directory


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object a line, creating the parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _sentiment_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        positive = rng.random() < 0.5
        words = [rng.choice(_FILLER) for _ in range(4)]
        words.insert(rng.randrange(5), rng.choice(_POSITIVE if positive else _NEGATIVE))
        rows.append({"sentence": " ".join(words), "label": "pos" if positive else "neg"})
    return rows


def _similarity_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        first = rng.sample(_ANIMALS, 3)
        shared = rng.randint(0, 3)
        second = first[:shared] + rng.sample([a for a in _ANIMALS if a not in first], 3 - shared)
        rows.append(
            {"sentence1": " ".join(first), "sentence2": " ".join(second), "label": shared * 5 / 3}
        )
    return rows


def write_embedded_tasks(root: Path, sizes: tuple[int, int, int] = (64, 24, 24)) -> dict:
    """Two embedded tasks under root/data/raw/tasks and their params.yaml specs."""
    for split, count, seed in zip(("train", "dev", "test"), sizes, (1, 2, 3), strict=True):
        write_jsonl(root / f"data/raw/tasks/sentiment/{split}.jsonl", _sentiment_rows(count, seed))
        write_jsonl(root / f"data/raw/tasks/similar/{split}.jsonl", _similarity_rows(count, seed))
    return {
        "sentiment": {
            "source": "embedded",
            "path": "data/raw/tasks/sentiment",
            "kind": "classification",
            "text_columns": ["sentence"],
            "metric": "accuracy",
        },
        "similar": {
            "source": "embedded",
            "path": "data/raw/tasks/similar",
            "kind": "regression",
            "text_columns": ["sentence1", "sentence2"],
            "metric": "pearson",
        },
    }


def tiny_finetune_params(tasks: dict, **overrides) -> FinetuneParams:
    """FinetuneParams for `tasks` small enough for a test: 2 seeds, 2 epochs, 32 tokens."""
    values = {
        "tasks": tasks,
        "seeds": [0, 1],
        "epochs": 2,
        "batch_size": 16,
        "max_seq_length": 32,
        "learning_rate": 1e-3,
    }
    return parse(FinetuneParams, values | overrides, "params.yaml: finetune")


def load_embedded_task(root: Path, specs: dict, name: str) -> TaskData:
    """Task `name` of `write_embedded_tasks(root)`, read with its spec."""
    return load_task(
        name, parse(TaskSpec, specs[name] | {"path": str(root / specs[name]["path"])}, "t")
    )


# --- vocab and tokenizer -----------------------------------------------------------------------

VOCAB_TRAIN_DOCUMENTS = [
    [
        "The quick brown fox jumps over the lazy dog.",
        "Dogs and foxes are running in the forest, and the runner keeps running.",
    ],
    [
        "A tokenizer splits text into words, and words into pieces.",
        "Pieces that continue a word start with two hash signs.",
    ],
    [
        "BERT was pretrained on books and on an encyclopedia.",
        "Its vocabulary has thirty thousand pieces; ours is smaller.",
    ],
    ["Unaffable people are rarely affable.", "The unaffable runner ran, and ran again."],
    [
        "She ordered a café au lait at the café near the Ångström laboratory.",
        "Naïve readers think a résumé is a summary; it is, in a way.",
    ],
    ["CAFÉ, RÉSUMÉ and NAÏVE are written in capitals here.", "Crème brûlée is a dessert."],
    ["Straße and Fußgänger are German words.", "İstanbul and Ankara are Turkish cities."],
    ["Η ΟΔΟΣ είναι μακριά.", "Ο δρόμος και οι δρόμοι της πόλης.", "ΣΟΦΟΣ ΑΝΘΡΩΠΟΣ."],
    ["Москва и Санкт-Петербург — большие города.", "Привет, мир!"],
    ["北京大学是中国的一所大学。", "我们在北京学习中文。", "东京和京都是日本的城市。"],
    ["日本語のテキストです。", "ひらがなとカタカナと漢字を使います。"],
    ["한국어 문장도 있습니다.", "서울은 한국의 수도입니다."],
    ["Emoji like 😀 and 👍🏽 appear in chats.", "Flags such as 🇫🇷 are pairs of letters."],
    ["Numbers: 3.14, 2,718 and 1e-9 are common.", "Prices in € and $ differ; 50% off!"],
    ["Quotes “like these” and «these» are punctuation.", "So are dashes — and ellipses…"],
    ["e-mail addresses such as someone@example.com are split.", "URLs: https://example.org/a?b=c"],
    ["The runner's shoes were worn out.", "Running, runners and runs share a stem."],
    ["Mixed text: Latin, Ελληνικά, Кириллица, עברית, العربية, हिन्दी and ไทย."],
    ["A very long word: pneumonoultramicroscopicsilicovolcanoconiosis.", "Supercalifragilistic!"],
    ["The lazy dog sleeps.", "The quick fox runs over the dog again and again."],
    ["Words in a book are counted.", "The counting of pieces decides the vocabulary."],
    ["Accents: àáâãäå èéêë ìíîï òóôõö ùúûü ç ñ.", "ÀÁÂÃÄÅ ÈÉÊË ÌÍÎÏ ÒÓÔÕÖ ÙÚÛÜ Ç Ñ."],
]
VOCAB_HELDOUT_DOCUMENTS = [
    ["The quick runner jumps over the forest dog.", "A zebra ⅋ appears only here."],
    ["Café readers in İstanbul and 北京.", "Ο ΔΡΟΜΟΣ."],
]
"""Ingested documents for the vocab and tokenizer tests: many scripts, accents, casings."""


def vocab_params(**overrides: object) -> VocabParams:
    """A small vocabulary (700) over every BERT special token; `overrides` for the rest."""
    values: dict[str, object] = {
        "vocab_size": 700,
        "lowercase": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "min_frequency": 1,
        "limit_alphabet": 400,
        "special_tokens": BERT_SPECIAL_TOKENS,
    }
    values.update(overrides)
    return VocabParams(**values)  # type: ignore[arg-type]


def write_documents(directory: Path, documents: list[list[str]]) -> Path:
    """Ingested documents as ingest writes them: validated Parquet shards."""
    writer = ShardWriter(
        directory,
        DOCUMENT_ARROW_SCHEMA,
        1000,
        validate=lambda frame: validate(DOCUMENTS, frame, str(directory)),
    )
    writer.write_rows(
        [
            {
                "doc_id": hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:16],
                "source": "fixture",
                "sentences": sentences,
            }
            for sentences in documents
        ]
    )
    writer.close()
    return directory


def write_ingested(root: Path, train: list[list[str]], heldout: list[list[str]]) -> Path:
    """root/data/ingested/{train,heldout}."""
    write_documents(root / "data/ingested/train", train)
    write_documents(root / "data/ingested/heldout", heldout)
    return root


def write_trained_tokenizer(directory: Path, train_dir: Path, params: VocabParams) -> Path:
    """Train on `train_dir` and write the tokenizer's files into `directory`, as the stage does."""
    directory.mkdir(parents=True, exist_ok=True)
    write_tokenizer(train_tokenizer(train_dir, params), directory, params)
    return directory


def copy_tokenizer(source: Path, destination: Path) -> Path:
    destination.mkdir()
    for path in source.iterdir():
        (destination / path.name).write_bytes(path.read_bytes())
    return destination


# --- examples ----------------------------------------------------------------------------------

EXAMPLES_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SYLLABLES = [
    "ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "da",
    "shu", "gri", "on", "el", "am", "bor", "qui", "zen", "fa", "tho",
]  # fmt: skip


def fixture_documents(count: int, seed: int) -> list[list[str]]:
    """Documents of made-up words, so that a small WordPiece vocabulary splits many words."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))

    def sentence() -> str:
        words = [word() for _ in range(rng.randint(3, 25))]
        return " ".join(words).capitalize() + rng.choice([".", "!", "?"])

    return [[sentence() for _ in range(rng.randint(1, 12))] for _ in range(count)]


def write_split(directory: Path, documents: list[list[str]], rows_per_shard: int = 100) -> None:
    """An ingested split, `rows_per_shard` documents a shard."""
    directory.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(documents), rows_per_shard)):
        rows = [
            {
                "doc_id": hashlib.sha256(" ".join(sentences).encode()).hexdigest()[:16],
                "source": "fixture",
                "sentences": sentences,
            }
            for sentences in documents[start : start + rows_per_shard]
        ]
        table = pa.Table.from_pylist(rows, schema=DOCUMENT_ARROW_SCHEMA)
        pq.write_table(table, directory / f"part-{part:05d}.parquet")


def build_vocab(tokenizer_dir: Path, train_dir: Path, lowercase: bool = True) -> Path:
    """data/tokenizer as the vocab stage writes it (a small vocabulary: many "##" pieces)."""
    params = VocabParams(
        vocab_size=300,
        lowercase=lowercase,
        strip_accents=None,
        tokenize_chinese_chars=True,
        min_frequency=2,
        limit_alphabet=100,
        special_tokens=tuple(EXAMPLES_SPECIAL_TOKENS),
    )
    return write_trained_tokenizer(tokenizer_dir, train_dir, params)


def make_examples_project(root: Path) -> Path:
    """data/ingested (train 400 documents in 4 shards, heldout 30) and data/tokenizer."""
    write_split(root / "data/ingested/train", fixture_documents(400, seed=1))
    write_split(root / "data/ingested/heldout", fixture_documents(30, seed=2))
    build_vocab(root / "data/tokenizer", root / "data/ingested/train")
    return root


def small_examples_params(**overrides) -> ExamplesParams:
    """Units of 64 documents, in-process, two passes; `overrides` for the rest."""
    values = {"negative_pool_size": 64, "num_proc": 1, "dupe_factor": 2}
    return ExamplesParams(**(values | overrides))


def make_examples(project: Path, output: Path, params: ExamplesParams) -> dict:
    """The examples of `project` (a `make_examples_project`) in `output`; returns the metrics."""
    inputs = check_inputs(project / "data/ingested", project / "data/tokenizer", params)
    return write_examples(inputs, output, params, progress=False)


DOCUMENT_ID_STRIDE = 10_000
"""`unit_from_sentence_lengths` gives document d the token ids from (d + 1) * DOCUMENT_ID_STRIDE."""


def unit_from_sentence_lengths(documents: list[list[int]]) -> TokenizedUnit:
    """A unit whose document d has sentences of the given lengths, tokens from d's own id range."""
    sentence_lengths = np.array([length for document in documents for length in document])
    sentences_per_document = np.array([len(document) for document in documents])
    document_of_token = np.repeat(
        np.repeat(np.arange(len(documents)), sentences_per_document), sentence_lengths
    )
    token_ids = (document_of_token + 1) * DOCUMENT_ID_STRIDE + np.arange(
        len(document_of_token)
    ) % 97
    document_ends = np.cumsum(sentences_per_document).tolist()
    return TokenizedUnit(
        token_ids.astype(np.uint32),
        [0, *np.cumsum(sentence_lengths).tolist()],
        list(zip([0, *document_ends[:-1]], document_ends, strict=True)),
    )


def within_binomial_bound(successes: int, trials: int, probability: float, sigmas: float = 5.0):
    """Is `successes` within `sigmas` standard deviations of Binomial(trials, probability)?"""
    spread = sigmas * math.sqrt(trials * probability * (1 - probability))
    return abs(successes - trials * probability) <= spread


def copy_examples_project(project: Path, tmp_path: Path) -> Path:
    """A copy of a `make_examples_project`'s data/, to break without touching the original."""
    copy = tmp_path / "broken"
    shutil.copytree(project / "data", copy / "data")
    return copy


# --- registry (helper RG): MLflow stores, the register stage's inputs, quick versions --------

REGISTRY_LEARNING_RATE = 0.001  # the rate of every seed build_register_project writes
REGISTRY_SEEDS = (0, 1)
REGISTRY_INITS = ("pretrained", "scratch")
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@functools.cache
def empty_store(base_temp: Path) -> Path:
    """An MLflow sqlite store with its tables created, once per test session (migrations
    take seconds); tests copy it."""
    import mlflow  # here, not at the top: the GPU machine's tests import this module without it

    directory = base_temp / "mlflow-template"
    directory.mkdir()
    path = directory / "mlflow.db"
    with contextlib.chdir(directory):
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def fresh_store(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A copy of the empty store for this test alone, set as MLFLOW_TRACKING_URI."""
    import mlflow

    path = tmp_path / "store" / "mlflow.db"
    path.parent.mkdir()
    shutil.copy(empty_store(tmp_path_factory.getbasetemp()), path)
    uri = f"sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(uri)
    return uri


def seed_metrics(kind: str, quality: float) -> dict[str, float]:
    """Plausible metrics of one seed, all rising with `quality`."""
    if kind == "regression":
        return {
            "pearson": quality,
            "spearman": quality - 0.01,
            "mse": 1 - quality,
            "score": quality,
        }
    return {"accuracy": quality, "matthews": 2 * quality - 1, "f1": quality, "score": quality}


def build_register_project(
    root: Path, qualities: dict[str, dict[int, float]] | None = None
) -> Path:
    """The inputs of the register stage, as the pipeline lays them out, in a git repo.

    The pretrain export, fine-tuned seeds and the metrics files, written with the finetune and
    evaluate modules' own summary functions so that their layout is the real one.
    `qualities[task][seed]` sets each init=pretrained seed's metrics (scratch is 0.5); by default
    seed 1 is the best on dev for every task.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / ".dvc").mkdir(exist_ok=True)
    export = make_tiny_export(root / "data/pretrained/model", hidden=16, layers=1)
    tag_pretrain_run(export)
    specs = write_embedded_tasks(root, sizes=(8, 4, 4))
    config = BertConfig.from_hf_dict(json.loads((export / "config.json").read_text()))
    for name, spec in specs.items():
        with contextlib.chdir(root):
            task = load_task(name, parse(TaskSpec, spec, name))
        task_dir = root / "data/finetuned" / name
        task_dir.mkdir(parents=True)
        (task_dir / "task.json").write_text(json.dumps(task.describe()))
        num_labels = 1 if task.kind == "regression" else len(task.labels)
        for init in REGISTRY_INITS:
            for seed in REGISTRY_SEEDS:
                seed_dir = task_dir / init / f"seed-{seed}"
                torch.manual_seed(seed)
                model = BertForSequenceClassification(config, num_labels, task.labels or None)
                save_pretrained(model, seed_dir / "model")
                for file in TOKENIZER_FILES:
                    shutil.copy(export / file, seed_dir / "model" / file)
                quality = (
                    0.5
                    if init == "scratch"
                    else (qualities or {}).get(name, {}).get(seed, 0.7 + 0.1 * seed)
                )
                metrics = seed_metrics(task.kind, quality)
                (seed_dir / "metrics.json").write_text(
                    json.dumps(
                        {"init": init, "seed": seed, "learning_rate": REGISTRY_LEARNING_RATE}
                        | {"best_epoch": 1, "history": []}
                        | {"dev": metrics, "test": metrics}
                    )
                )
    inits, seeds = list(REGISTRY_INITS), list(REGISTRY_SEEDS)
    results = collect_results(root / "data/finetuned", list(specs), inits, seeds)
    (root / "metrics/finetune").mkdir(parents=True)
    for name, (info, metrics) in results.items():
        summary = summarize_seeds(info, metrics)
        (root / f"metrics/finetune/{name}.json").write_text(json.dumps(summary))
    evaluation = evaluate_results(results, inits, seeds, "test")
    (root / "metrics/eval.json").write_text(json.dumps(evaluation))
    params = {
        "finetune": {"tasks": specs, "seeds": seeds, "max_seq_length": 32},
        "evaluate": {"headline_split": "test"},
        "register": {"encoder_model_name": "tiny-encoder", "task_model_name": "tiny-{task}"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("/data/pretrained\n/data/finetuned\n/mlartifacts\n")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fixture"], cwd=root, check=True)
    return root


def tag_pretrain_run(export: Path, tracking_uri: str | None = None) -> str:
    """A finished run named pretrain, tagged with `export`'s weights sha256 as the pretrain
    stage tags its run (how finetune and register find it); its id."""
    import mlflow

    from bertforge.io import sha256_file
    from bertforge.tracking import EXPERIMENT_NAME, PRETRAINED_WEIGHTS_TAG, artifact_location

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(EXPERIMENT_NAME, artifact_location(tracking_uri))
    )
    weights = sha256_file(export / "model.safetensors")
    run = client.create_run(
        experiment_id, tags={PRETRAINED_WEIGHTS_TAG: weights}, run_name="pretrain"
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def run_register_stage(project: Path) -> int:
    """Run stages/register.py in-process in `project`; its exit code."""
    with contextlib.chdir(project):
        try:
            runpy.run_path(str(REPO_ROOT / "stages/register.py"), run_name="__main__")
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0


def eval_summary(mean: float, std: float = 0.01, metric: str = "accuracy") -> EvalSummary:
    """Three seeds' summary with `metric` (primary) and f1 both at `mean` ± `std`."""
    return EvalSummary(metric, {metric: MetricStat(mean, std), "f1": MetricStat(mean, std)}, 3)


def add_version(name: str, summary: EvalSummary | None, tags: dict | None = None) -> str:
    """A registered version with tags only (no model files): for promotion and CLI tests."""
    import mlflow

    client = mlflow.MlflowClient()
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.create_registered_model(name)
    all_tags = (summary.to_tags() if summary else {}) | (tags or {})
    return client.create_model_version(name, "file:///nonexistent", tags=all_tags).version


# --- pretrain ----------------------------------------------------------------------------------
# A tiny tokenizer and data/examples written with pyarrow: the examples contract without running
# the examples stage (a model with hidden size 32, 2 layers, sequences up to 32).

_PRETRAIN_WORDS_TEXT = (
    "the a of and to in is was it for on with as by at from that this he she they we you cat "
    "dog bird fish tree house river city road car boat king queen man woman child day night "
    "sun moon star water fire stone wind rain snow red blue green white black old new big "
    "small good bad runs sees eats makes takes goes comes says knows"
)
PRETRAIN_WORDS = _PRETRAIN_WORDS_TEXT.split()
_LETTERS = list("abcdefghijklmnopqrstuvwxyz")
PRETRAIN_VOCAB = [
    *BERT_SPECIAL_TOKENS,
    *PRETRAIN_WORDS,
    *_LETTERS,
    *[f"##{letter}" for letter in _LETTERS],
    ".",
    ",",
]

PRETRAIN_TINY_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 32,
    "hidden_dropout_prob": 0.1,  # dropout draws from the per-rank generators a resume restores
    "attention_probs_dropout_prob": 0.1,
}
PRETRAIN_TINY_PARAMS = {
    "model": PRETRAIN_TINY_MODEL,
    "processes": 1,
    "zero_stage": 2,
    "micro_batch_size": 8,
    "global_batch_size": 16,
    "lr": 0.002,
    "warmup_steps": 2,
    "max_steps": 6,
    "checkpoint_every": 3,
    "keep_checkpoints": 2,
    "eval_batch_size": 16,
    "log_every": 1,
    "length_bucket_batches": 2,
}


def write_pretrain_tokenizer(directory: Path) -> None:
    """vocab.txt, tokenizer.json (BERT's WordPiece pipeline) and transformers' config files."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(PRETRAIN_VOCAB) + "\n", encoding="utf-8")
    vocab = {token: index for index, token in enumerate(PRETRAIN_VOCAB)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": 32,
        **{f"{name}_token": f"[{name.upper()}]" for name in ("unk", "sep", "pad", "cls", "mask")},
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    special_map = {
        f"{name}_token": f"[{name.upper()}]" for name in ("unk", "sep", "pad", "cls", "mask")
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special_map), encoding="utf-8")


def pretrain_masking_rule() -> MaskingRule:
    """Single-token masking of 15% (at most 5 a row) over `PRETRAIN_VOCAB`."""
    ids = {token: index for index, token in enumerate(PRETRAIN_VOCAB)}
    return MaskingRule(
        masked_lm_prob=0.15,
        max_predictions_per_seq=5,
        vocab_size=len(PRETRAIN_VOCAB),
        mask_id=ids["[MASK]"],
        unmaskable_ids=(ids["[CLS]"], ids["[SEP]"]),
    )


def synthetic_pretrain_examples(count: int, seed: int, max_seq_length: int = 32) -> list[dict]:
    """[CLS] A [SEP] B [SEP] rows of Zipf-distributed words, statically masked (15%)."""
    rng = np.random.default_rng(seed)
    ids = {token: index for index, token in enumerate(PRETRAIN_VOCAB)}
    word_ids = np.array([ids[word] for word in PRETRAIN_WORDS])
    zipf = 1.0 / np.arange(1, len(word_ids) + 1)
    rule = pretrain_masking_rule()
    rows = []
    for _ in range(count):
        length_a = int(rng.integers(2, 12))
        length_b = int(rng.integers(1, max_seq_length - 3 - length_a + 1))
        segment_a = rng.choice(word_ids, size=length_a, p=zipf / zipf.sum())
        segment_b = rng.choice(word_ids, size=length_b, p=zipf / zipf.sum())
        tokens = np.concatenate(
            [[ids["[CLS]"]], segment_a, [ids["[SEP]"]], segment_b, [ids["[SEP]"]]]
        )
        masked, positions, labels = create_masked_lm_predictions(
            tokens.astype(np.uint16), rule, rng
        )
        rows.append(
            {
                "input_ids": masked.astype(np.uint16),
                "segment_b_start": 2 + length_a,
                "masked_lm_positions": positions.astype(np.int16),
                "masked_lm_ids": labels.astype(np.uint16),
                "next_sentence_label": int(rng.integers(0, 2)),
            }
        )
    return rows


def write_pretrain_examples(
    directory: Path, tokenizer_dir: Path, train: int = 128, heldout: int = 40
) -> None:
    """data/examples: two train shards and one held-out shard, and meta.json."""
    schema = examples_arrow_schema(len(PRETRAIN_VOCAB))
    counts = {"train": train, "heldout": heldout}
    for split_index, (split, count) in enumerate(counts.items()):
        rows = synthetic_pretrain_examples(count, seed=split_index)
        (directory / split).mkdir(parents=True, exist_ok=True)
        shards = [rows[: count // 2], rows[count // 2 :]] if split == "train" else [rows]
        for index, shard in enumerate(shards):
            table = pa.Table.from_pylist(shard, schema=schema)
            pq.write_table(table, directory / split / f"part-{index:05d}.parquet")
    ids = {token: index for index, token in enumerate(PRETRAIN_VOCAB)}
    meta = {
        "vocab_digest": vocab_digest(tokenizer_dir),
        "vocab_size": len(PRETRAIN_VOCAB),
        "id_dtype": "uint16",
        "special_token_ids": {token: ids[token] for token in BERT_SPECIAL_TOKENS},
        "instances": counts,
        "dupe_factor": {"train": 1, "heldout": 1},
        "max_seq_length": 32,
        "masking": "static",
        "nsp": True,
        "whole_word_mask": False,
        "max_predictions_per_seq": 5,
        "masked_lm_prob": 0.15,
        "short_seq_prob": 0.1,
        "negative_pool_size": 10,
        "random_seed": 0,
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def make_pretrain_project(root: Path, **overrides) -> Path:
    """A directory the pretrain stage can run in: params.yaml, data/tokenizer, data/examples."""
    write_pretrain_tokenizer(root / "data/tokenizer")
    write_pretrain_examples(root / "data/examples", root / "data/tokenizer")
    write_pretrain_params(root, **overrides)
    return root


def write_pretrain_params(root: Path, **overrides) -> dict:
    params = {**PRETRAIN_TINY_PARAMS, **overrides}
    (root / "params.yaml").write_text(yaml.safe_dump({"pretrain": params}), encoding="utf-8")
    return params


def pretrain_params(**overrides) -> PretrainParams:
    return parse(PretrainParams, {**PRETRAIN_TINY_PARAMS, **overrides}, "params.yaml: pretrain")


def pretrain_paths(root: Path) -> PretrainPaths:
    return PretrainPaths(
        examples=root / "data/examples",
        tokenizer=root / "data/tokenizer",
        checkpoints=root / "data/pretrained/checkpoints",
        export=root / "data/pretrained/model",
        train_log=root / "metrics/pretrain_log.tsv",
    )


def cpu_collator(
    split: ExampleSplit, dynamic_masking: MaskingRule | None = None, seed: int = 0
) -> Collator:
    """The collator of the pretrain fixture examples on CPU ([PAD] 0, at most 5 predictions)."""
    return Collator(
        split,
        pad_id=0,
        max_predictions_per_seq=5,
        device=torch.device("cpu"),
        dynamic_masking=dynamic_masking,
        seed=seed,
        mask_domain=0,
    )
