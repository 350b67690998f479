"""Continued pretraining through the stage scripts, as DVC runs them: vocab takes (and extends) a
parent's vocabulary, pretrain continues a parent saved by transformers; each bad parent is one
line on stderr, exit code 2, and the previous outputs left as they were."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import transformers
import yaml
from tokenizers import ByteLevelBPETokenizer

from bertforge.io import hash_path
from bertforge.tokenizer.pipeline import BERT_SPECIAL_TOKENS
from tests.continued import (
    DOMAIN_DOCUMENTS,
    PARENT_VOCAB,
    save_transformers_parent,
    write_foreign_config,
    write_parent_tokenizer,
)
from tests.factories import (
    PRETRAIN_TINY_MODEL,
    PRETRAIN_VOCAB,
    VOCAB_HELDOUT_DOCUMENTS,
    make_pretrain_project,
    stage_error_lines,
    write_ingested,
    write_pretrain_params,
)
from tests.support import REPO_ROOT, stage_env

pytestmark = pytest.mark.slow


def run_stage(name: str, root: Path, **env: str) -> subprocess.CompletedProcess:
    environment = stage_env() | {"OMP_NUM_THREADS": "1"} | env  # no launcher's variables
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / f"{name}.py")],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def refused(result: subprocess.CompletedProcess, fragment: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = stage_error_lines(result)
    assert len(lines) == 1 and fragment in lines[0], lines
    return lines[0]


# --- vocab ---------------------------------------------------------------------------------------


def write_vocab_params(root: Path, **overrides: object) -> None:
    section = {
        **PARENT_VOCAB,
        "lowercase": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "min_frequency": 2,
        "special_tokens": list(BERT_SPECIAL_TOKENS),
        "max_unk_rate": 1.0,
        "init_from": {"path": "parent"},
        "extend_with": 4,
    } | overrides
    (root / "params.yaml").write_text(yaml.safe_dump({"vocab": section}), encoding="utf-8")


@pytest.fixture(scope="module")
def vocab_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The domain corpus ingested, a parent tokenizer in parent/, and one good run of the stage."""
    root = tmp_path_factory.mktemp("vocab-project")
    write_parent_tokenizer(root / "parent", tmp_path_factory.mktemp("general"))
    write_ingested(root, DOMAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS)
    write_vocab_params(root)
    result = run_stage("vocab", root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_the_vocab_stage_writes_the_parent_vocabulary_extended(vocab_project: Path) -> None:
    parent = (vocab_project / "parent/vocab.txt").read_text().splitlines()
    ours = (vocab_project / "data/tokenizer/vocab.txt").read_text().splitlines()
    assert ours[: len(parent)] == parent and len(ours) == len(parent) + 4
    extension = json.loads((vocab_project / "data/tokenizer/vocab_extension.json").read_text())
    assert [piece["token"] for piece in extension["added"]] == ours[len(parent) :]
    metrics = json.loads((vocab_project / "metrics/vocab.json").read_text())
    assert metrics["parent"] == "parent" and metrics["added_pieces"] == 4
    assert metrics["parent_vocab_size"] == len(parent)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"lowercase": False, "strip_accents": True}, "vocab.lowercase is false, but the parent"),
        ({"extend_with": 100_000}, "vocab.extend_with is 100000, but the corpus offers only"),
        ({"init_from": {"path": "nowhere"}}, "vocab.init_from.path nowhere: directory not found"),
        ({"init_from": {"path": "bpe"}}, "a BPE tokenizer, not BERT's WordPiece"),
    ],
)
def test_a_bad_parent_vocabulary_fails_in_one_line_and_keeps_the_tokenizer(
    vocab_project: Path, tmp_path: Path, overrides: dict, fragment: str
) -> None:
    root = tmp_path / "project"
    shutil.copytree(vocab_project, root)
    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator(["words to learn"] * 5, vocab_size=280, show_progress=False)
    (root / "bpe").mkdir()
    trained.save(str(root / "bpe" / "tokenizer.json"))
    before = hash_path(root / "data/tokenizer"), hash_path(root / "metrics/vocab.json")
    write_vocab_params(root, **overrides)
    refused(run_stage("vocab", root), fragment)
    assert (hash_path(root / "data/tokenizer"), hash_path(root / "metrics/vocab.json")) == before


# --- pretrain ------------------------------------------------------------------------------------

PARENT_SHAPE = {key: value for key, value in PRETRAIN_TINY_MODEL.items() if "dropout" not in key}


@pytest.fixture(scope="module")
def pretrain_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pretrain fixture project, a parent saved by transformers in parent/, one good run."""
    root = make_pretrain_project(tmp_path_factory.mktemp("pretrain-project"))
    shutil.copytree(root / "data/tokenizer", root / "parent")
    save_transformers_parent(root / "parent", len(PRETRAIN_VOCAB), **PARENT_SHAPE)
    write_pretrain_params(root, init_from={"path": "parent"}, warmup_steps=2, lr=0.0005)
    result = run_stage("pretrain", root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pretrain: initialised from path parent, sha256" in result.stderr
    assert "freshly initialised: bert.pooler.dense.bias" in result.stderr
    return root


def test_the_pretrain_stage_continues_the_parent_and_records_it(pretrain_project: Path) -> None:
    export = pretrain_project / "data/pretrained/model"
    lineage = json.loads((export / "lineage.json").read_text())
    assert lineage["parent"] == {"path": "parent", "sha256": hash_path(pretrain_project / "parent")}
    metrics = json.loads((pretrain_project / "metrics/pretrain.json").read_text())
    assert metrics["init"]["parent"] == lineage["parent"]
    assert "cls.seq_relationship.weight" in metrics["init"]["initialized"]
    fill = transformers.pipeline("fill-mask", model=str(export), tokenizer=str(export))
    assert len(fill("the cat [MASK] the dog .", top_k=2)) == 2
    client = mlflow.MlflowClient(f"sqlite:///{pretrain_project / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("bertforge").experiment_id],
        "tags.`bertforge.stage` = 'pretrain'",
    )
    assert runs and runs[0].data.tags["bertforge.parent.path"] == "parent"


def write_parent(root: Path, kind: str) -> dict:
    """params.yaml's init_from for each kind of bad parent, written into the project."""
    if kind in ("roberta", "gpt2", "distilbert"):
        write_foreign_config(root / kind, kind)
        return {"path": kind}
    if kind == "short":  # 16 positions for examples of 32 tokens
        shutil.copytree(root / "data/tokenizer", root / "short")
        save_transformers_parent(
            root / "short", len(PRETRAIN_VOCAB), **(PARENT_SHAPE | {"max_position_embeddings": 16})
        )
        return {"path": "short"}
    if kind == "wide":
        shutil.copytree(root / "data/tokenizer", root / "wide")
        save_transformers_parent(
            root / "wide", len(PRETRAIN_VOCAB), **(PARENT_SHAPE | {"hidden_size": 64})
        )
        return {"path": "wide"}
    if kind == "hub":
        return {"hub": "org/not-cached", "revision": "main"}
    return {"path": "nowhere"}


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("roberta", "model_type 'roberta'"),
        ("gpt2", "model_type 'gpt2'"),
        ("distilbert", "model_type 'distilbert'"),
        ("short", "has max_position_embeddings 16, below the examples' max_seq_length (32)"),
        ("wide", "pretrain.model.hidden_size is 32, but the parent wide has 64"),
        ("hub", "is not in the local Hugging Face cache and the hub is offline"),
        ("missing", "pretrain.init_from.path nowhere: directory not found"),
    ],
)
def test_a_bad_parent_fails_in_one_line_and_keeps_the_export(
    pretrain_project: Path, tmp_path: Path, kind: str, fragment: str
) -> None:
    root = tmp_path / "project"
    shutil.copytree(pretrain_project, root)
    outputs = [root / "data/pretrained/model", root / "metrics/pretrain.json"]
    before = [hash_path(path) for path in outputs]
    write_pretrain_params(root, init_from=write_parent(root, kind), warmup_steps=2, lr=0.0005)
    hub_env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    refused(run_stage("pretrain", root, **hub_env), fragment)
    assert [hash_path(path) for path in outputs] == before
    assert os.listdir(root / "data/pretrained") == os.listdir(pretrain_project / "data/pretrained")
