"""Parent checkpoints: a local directory is identified by its content, a hub model by the commit
its revision resolves to (from the local cache when offline), and an uncached hub model while
offline is one line. Hub tests run in a subprocess: huggingface_hub reads HF_HUB_OFFLINE and
the cache location when it is imported."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.params import load_params, parse
from bertforge.parent import ParentSpec, exported_parent, parent_tags, resolve_parent
from bertforge.pretrain.params import PretrainParams
from bertforge.vocab.params import VocabParams
from tests.support import REPO_ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = (
    "import sys\n"
    "from bertforge.errors import BertforgeError\n"
    "from bertforge.parent import ParentSpec, resolve_parent\n"
    "try:\n"
    "    spec = ParentSpec(hub=sys.argv[1], revision=sys.argv[2])\n"
    "    parent = resolve_parent(spec, 'x.init_from')\n"
    "except BertforgeError as error:\n"
    "    sys.exit(str(error))\n"
    "print(parent.directory)\n"
    "print(parent.identity)\n"
)


def resolve_offline(cache: Path, repo: str, revision: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent)}
    return subprocess.run(
        [sys.executable, "-c", RESOLVE, repo, revision],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_cached_hub_model_resolves_offline_to_its_commit(tmp_path: Path) -> None:
    """A branch name is resolved once, to the commit lineage records."""
    repo = tmp_path / "hub" / "models--org--tiny-bert"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    result = resolve_offline(tmp_path / "hub", "org/tiny-bert", "main")
    assert result.returncode == 0, result.stderr
    directory, identity = result.stdout.splitlines()
    assert Path(directory) == repo / "snapshots" / COMMIT
    assert identity == str({"hub": "org/tiny-bert", "revision": COMMIT})


def test_an_uncached_hub_model_while_offline_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "hub").mkdir()
    result = resolve_offline(tmp_path / "hub", "org/absent", "main")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "params.yaml: x.init_from.hub 'org/absent' at revision 'main' is not in the local "
        "Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1): download it once online, "
        "or give a local path"
    )


def test_a_local_parent_is_identified_by_its_content(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    first = resolve_parent(ParentSpec(path=str(tmp_path)), "pretrain.init_from")
    (tmp_path / "config.json").write_text('{"model_type": "bert", "x": 1}')
    second = resolve_parent(ParentSpec(path=str(tmp_path)), "pretrain.init_from")
    assert first.identity["path"] == second.identity["path"] == str(tmp_path)
    assert first.identity["sha256"] != second.identity["sha256"]
    assert parent_tags(first.identity) == {
        "bertforge.parent.path": str(tmp_path),
        "bertforge.parent.sha256": first.identity["sha256"],
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "x.init_from.path or hub: exactly one must be given"),
        ({"path": "a", "hub": "b", "revision": "c"}, "exactly one must be given"),
        ({"hub": "bert-base-uncased"}, "x.init_from.revision must pin the hub model"),
        ({"path": "a", "revision": "main"}, "x.init_from.revision applies to hub models only"),
    ],
)
def test_a_parent_spec_is_a_path_or_a_pinned_hub_model(values: dict, message: str) -> None:
    with pytest.raises(BertforgeError, match=message):
        parse(ParentSpec, values, "params.yaml: x.init_from")


def test_an_export_tells_its_parent(tmp_path: Path) -> None:
    assert exported_parent(tmp_path) is None
    (tmp_path / "lineage.json").write_text('{"parent": null, "steps": 3}')
    assert exported_parent(tmp_path) is None
    (tmp_path / "lineage.json").write_text('{"parent": {"hub": "h", "revision": "r"}}')
    assert exported_parent(tmp_path) == {"hub": "h", "revision": "r"}


def test_the_repo_params_default_to_no_parent_as_the_dataclasses_do() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    defaults = {
        ("vocab", "init_from"): fields_of(VocabParams)["init_from"],
        ("vocab", "extend_with"): fields_of(VocabParams)["extend_with"],
        ("pretrain", "init_from"): fields_of(PretrainParams)["init_from"],
    }
    for (section, key), default in defaults.items():
        assert params[section][key] == default == (0 if key == "extend_with" else None)


def fields_of(cls: type) -> dict:
    return {field.name: field.default for field in dataclasses.fields(cls)}
