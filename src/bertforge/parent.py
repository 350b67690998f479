"""A parent checkpoint: a released BERT to continue from (the vocab stage takes its tokenizer,
pretrain its weights).

params.yaml names it as ``{path: DIR}`` (a local directory in transformers' layout) or
``{hub: ID, revision: REV}`` (a Hugging Face hub model at a pinned revision). `resolve_parent`
turns either into a local directory and an identity that lineage records: the path and a
content hash of the directory, or the hub id and the commit the revision resolved to (once; a
hub model the local cache does not hold while offline is a one-line error).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bertforge.errors import BertforgeError
from bertforge.io import hash_path, read_json
from bertforge.params import require

PARENT_TAG_PREFIX = "bertforge.parent."
LINEAGE_FILE = "lineage.json"

# what a hub download fetches: configs, weights in either format, the tokenizer files
HUB_PATTERNS = (
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "pytorch_model-*.bin",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@dataclass(frozen=True)
class ParentSpec:
    """``{path: DIR}`` or ``{hub: ID, revision: REV}`` in params.yaml."""

    path: str | None = None
    hub: str | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        require(
            (self.path is None) != (self.hub is None),
            "path",
            "or hub: exactly one must be given",
            {"path": self.path, "hub": self.hub},
        )
        if self.hub is not None:
            require(
                bool(self.revision),
                "revision",
                f"must pin the hub model {self.hub!r} (a commit sha, or a tag or branch "
                "resolved once to its commit)",
                self.revision,
            )
        else:
            require(self.revision is None, "revision", "applies to hub models only", self.revision)


@dataclass(frozen=True)
class Parent:
    """A resolved parent: where its files are and what lineage records about it."""

    directory: Path
    identity: dict[str, str]  # {"path", "sha256"} or {"hub", "revision"} (a commit sha)

    @property
    def label(self) -> str:
        if "hub" in self.identity:
            return f"{self.identity['hub']}@{self.identity['revision'][:12]}"
        return self.identity["path"]

    def tags(self) -> dict[str, str]:
        return parent_tags(self.identity)


def parent_tags(identity: Mapping[str, str]) -> dict[str, str]:
    """MLflow tags of a parent identity: ``bertforge.parent.<key>``."""
    return {f"{PARENT_TAG_PREFIX}{key}": str(value) for key, value in sorted(identity.items())}


def resolve_parent(spec: ParentSpec, param: str) -> Parent:
    """The parent's local directory and identity; `param` (e.g. ``pretrain.init_from``) names
    the parameter in errors."""
    if spec.path is not None:
        return resolve_local(Path(spec.path), param)
    return resolve_hub(spec.hub or "", spec.revision or "", param)


def resolve_local(directory: Path, param: str) -> Parent:
    if not directory.is_dir():
        raise BertforgeError(f"params.yaml: {param}.path {directory}: directory not found")
    return Parent(directory, {"path": directory.as_posix(), "sha256": hash_path(directory)})


def resolve_hub(repo_id: str, revision: str, param: str) -> Parent:
    """Download (or find in the cache) the hub model's files at `revision`; the snapshot
    directory is named after the commit the revision resolved to, which lineage records."""
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=list(HUB_PATTERNS))
        )
    except Exception as error:  # offline, unknown repo or revision, network: one line
        if constants.HF_HUB_OFFLINE:
            raise BertforgeError(
                f"params.yaml: {param}.hub {repo_id!r} at revision {revision!r} is not in the "
                "local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1): download "
                "it once online, or give a local path"
            ) from None
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BertforgeError(
            f"params.yaml: {param}.hub {repo_id!r} at revision {revision!r}: {first_line}"
        ) from None
    return Parent(snapshot, {"hub": repo_id, "revision": snapshot.name})


def exported_parent(model_dir: Path) -> dict[str, str] | None:
    """The parent an export was continued from (its lineage.json), or None (from scratch)."""
    path = Path(model_dir) / LINEAGE_FILE
    if not path.is_file():
        return None
    parent = read_json(path, "pretrain").get("parent")
    return {str(key): str(value) for key, value in parent.items()} if parent else None
