"""tests.support's stage environment: a project copy's stages run the copy's own code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT, stage_env

PROBE = [sys.executable, "-c", "import bertforge; print(bertforge.__file__)"]


def imported_from(cwd: Path, env: dict[str, str]) -> Path:
    found = subprocess.run(PROBE, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    return Path(found.stdout.strip()).resolve()


def test_a_copys_stages_import_the_copys_package_not_the_editable_install(tmp_path):
    package = tmp_path / "src" / "bertforge"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""the copy\'s bertforge"""\n', encoding="utf-8")
    assert imported_from(tmp_path, stage_env(tmp_path)) == (package / "__init__.py").resolve()
    # without the project: the checkout's package (the editable install), whatever the cwd —
    # the code a benchmark's copy would run, edits made here meanwhile included
    checkout = (REPO_ROOT / "src" / "bertforge" / "__init__.py").resolve()
    assert imported_from(tmp_path, stage_env()) == checkout
