"""Where the registry is, and how bertforge addresses and looks up its versions.

The registry lives in the project's MLflow store (`bertforge.tracking.tracking_uri`) unless
MLFLOW_REGISTRY_URI says otherwise. A version is named by a ``models:/`` URI (`parse_model_uri`);
`Registry` resolves it, and every lookup that fails says in one line what does exist.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.registry.params import MODEL_NAME_PATTERN
from bertforge.tracking import tracking_uri


def registry_uri() -> str:
    """The registry lives in the tracking store unless MLFLOW_REGISTRY_URI says otherwise.

    (Never call ``mlflow.set_registry_uri`` in-process: it also writes MLFLOW_REGISTRY_URI into
    the environment, which would then outlive the call.)
    """
    return os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri()


def registry_client() -> Any:
    """A client bound to the project's store and registry, whatever MLflow's globals say."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())


def registered_model_exists(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI: a model name and either a version or an alias."""

    name: str
    version: str | None = None
    alias: str | None = None


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/<name>@<alias or version>``, ``models:/<name>/<version>`` or ``/latest``."""
    expected = "expected models:/<name>@<alias or version> or models:/<name>/<version>"
    if not uri.startswith("models:/"):
        raise BertforgeError(f"{uri!r} is not a models:/ URI ({expected})")
    path = uri[len("models:/") :]
    if "@" in path:
        name, _, suffix = path.partition("@")
        if "/" in name or "/" in suffix:
            raise BertforgeError(f"{uri!r} is malformed ({expected})")
    elif path.count("/") == 1:
        name, _, suffix = path.partition("/")
    else:
        raise BertforgeError(f"{uri!r} is malformed ({expected})")
    if not MODEL_NAME_PATTERN.match(name) or not suffix:
        raise BertforgeError(f"{uri!r} is malformed ({expected})")
    if suffix.isdigit() or re.fullmatch(r"[vV]\d+", suffix):
        return ModelRef(name, version=str(int(suffix.lstrip("vV"))))
    if suffix == "latest":
        return ModelRef(name)
    if not re.fullmatch(r"[\w-]+", suffix):
        raise BertforgeError(f"{uri!r} has an invalid alias {suffix!r}")
    return ModelRef(name, alias=suffix)


class Registry:
    """The registry lookups bertforge needs, each failing in one line on bad input."""

    def __init__(self, client: Any | None = None) -> None:
        import mlflow

        if client is None:
            mlflow.set_tracking_uri(tracking_uri())
            client = registry_client()
        self.client = client

    def registered_model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        known = sorted(model.name for model in self.client.search_registered_models())
        listing = ", ".join(known) if known else "none registered yet"
        raise BertforgeError(f"unknown model {name!r} (registered: {listing})")

    def versions(self, name: str) -> list[Any]:
        self.registered_model(name)
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted(found, key=lambda version: int(version.version))

    def version(self, name: str, version: str | int | None = None) -> Any:
        """A version by number, or the latest when `version` is None."""
        versions = self.versions(name)
        if not versions:
            raise BertforgeError(f"model {name!r} has no versions")
        if version is None:
            return versions[-1]
        for candidate in versions:
            if str(candidate.version) == str(version):
                return candidate
        numbers = ", ".join(str(v.version) for v in versions)
        raise BertforgeError(f"model {name!r} has no version {version} (versions: {numbers})")

    def aliases(self, name: str) -> dict[str, str]:
        """alias → version number of a registered model."""
        return {
            alias: str(version)
            for alias, version in (self.registered_model(name).aliases or {}).items()
        }

    def resolve(self, ref: ModelRef) -> Any:
        if ref.alias is None:
            return self.version(ref.name, ref.version)
        aliases = self.aliases(ref.name)
        if ref.alias not in aliases:
            elsewhere = self._models_with_alias(ref.alias, exclude=ref.name)
            hint = f"; {ref.alias!r} is an alias of {', '.join(elsewhere)}" if elsewhere else ""
            have = ", ".join(f"@{alias}" for alias in sorted(aliases)) or "none"
            raise BertforgeError(
                f"model {ref.name!r} has no alias {ref.alias!r} (its aliases: {have}){hint}"
            )
        return self.version(ref.name, aliases[ref.alias])

    def _models_with_alias(self, alias: str, exclude: str) -> list[str]:
        return sorted(
            model.name
            for model in self.client.search_registered_models()
            if model.name != exclude and alias in (model.aliases or {})
        )
