"""stages/ingest.py against hostile sources and a hostile disk: exit 2, one line naming the file
or folder, the previous data/ingested and metrics/ingest.json intact, no staging debris, and
never a hang."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.factories import make_ingest_project, run_ingest_stage, stage_error_lines
from tests.robustness.support import (
    dead_pid,
    fill_up,
    full_disk,
    hand_to_user,
    previous_ingest_outputs,
    run_stage_in_process,
    shared_temp_dir,
    snapshot,
)

DOCUMENTS = "\n\n".join(
    f"Document {n} has a first sentence. It has a second one." for n in range(300)
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_ingest_project(tmp_path / "project")
    previous_ingest_outputs(root)
    return root


def use_sources(root: Path, pattern: str) -> None:
    """Point ingest.sources at `pattern` instead of corpus/*.txt."""
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("corpus/*.txt", pattern))


def rerun_fails_with(root: Path, line: str) -> None:
    """The stage exits 2 with exactly `line`, and changes nothing under data/ and metrics/."""
    before = snapshot(root)
    result = run_ingest_stage(root)
    assert result.returncode == 2, result.stderr
    assert stage_error_lines(result) == [line]
    assert snapshot(root) == before


def test_a_fifo_named_like_a_text_file_is_refused_without_blocking(project):
    os.mkfifo(project / "corpus" / "b.txt")  # nobody ever writes to it: opening it would block
    rerun_fails_with(
        project, "error: corpus/b.txt: is a FIFO (named pipe); a source must be a regular file"
    )


def test_a_truncated_zst_corpus_is_an_error_naming_the_file(project):
    compressed = zstandard.ZstdCompressor().compress(DOCUMENTS.encode())
    (project / "corpus" / "b.txt.zst").write_bytes(compressed[: len(compressed) // 2])
    use_sources(project, "corpus/*.txt*")
    rerun_fails_with(
        project,
        "error: corpus/b.txt.zst: cannot read: truncated: the file ends inside a zstd frame",
    )


def test_a_complete_multi_frame_zst_corpus_is_read_whole(tmp_path):
    from bertforge.ingest.readers import ZstdFrames

    frames = b"".join(
        zstandard.ZstdCompressor().compress(part.encode()) for part in DOCUMENTS.split("\n\n")
    )
    reader = ZstdFrames(io.BytesIO(frames))
    assert b"".join(iter(lambda: reader.read(4096), b"")) == DOCUMENTS.replace("\n\n", "").encode()


def write_parquet(path: Path, texts: list, **options) -> None:
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), path, **options)


def test_a_parquet_file_with_a_damaged_page_is_an_error_naming_the_file(project):
    path = project / "corpus" / "b.parquet"
    write_parquet(path, DOCUMENTS.split("\n\n"), compression="none", write_page_checksum=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside the text column's data page
    path.write_bytes(bytes(data))
    use_sources(project, "corpus/*.parquet")
    result = run_ingest_stage(project)
    assert result.returncode == 2
    (line,) = stage_error_lines(result)
    assert line.startswith("error: corpus/b.parquet: corrupt Parquet data after row 0: ")


def test_a_parquet_text_column_that_is_not_utf8_is_an_error_naming_the_file(project):
    path = project / "corpus" / "b.parquet"
    texts = pa.array([b"A fine first document. It is fine.", b"caf\xe9 au lait, in latin-1."])
    pq.write_table(pa.table({"text": texts.cast(pa.string(), safe=False)}), path)
    use_sources(project, "corpus/*.parquet")
    result = run_ingest_stage(project)
    assert result.returncode == 2
    (line,) = stage_error_lines(result)
    assert line.startswith("error: corpus/b.parquet: corrupt Parquet data after row 0: ")
    assert "UTF8" in line or "UTF-8" in line


def test_a_full_disk_during_ingest_says_so_and_keeps_the_previous_pair(tmp_path):
    root = make_ingest_project(tmp_path / "project")
    with full_disk(root / "data", size="128k"):
        previous_ingest_outputs(root)
        fill_up(root / "data")
        before = snapshot(root)
        result = run_ingest_stage(root)
        assert result.returncode == 2, result.stderr
        (line,) = stage_error_lines(result)
        assert line.startswith("error: disk full (no space left on device) while writing data/")
        assert snapshot(root) == before


def test_unreadable_source_read_only_data_and_metrics_folders_are_one_line_each(
    migrated_mlflow_store, monkeypatch, capsys
):
    """As an unprivileged user: an unreadable corpus file, then a read-only data/, then a
    read-only previous output, then a read-only metrics/: each exit 2 and one line, nothing
    changed; with everything writable again the stage runs and leaves no staging folder."""
    with shared_temp_dir() as shared:
        root = make_ingest_project(shared / "project")
        previous_ingest_outputs(root)
        store = root / "mlflow.db"
        shutil.copy(migrated_mlflow_store, store)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
        hand_to_user(root)
        before = snapshot(root)

        def fails_with(line: str) -> None:
            capsys.readouterr()
            assert run_stage_in_process(root) == 2
            errors = [text for text in capsys.readouterr().err.splitlines() if "error" in text]
            assert errors == [line]
            assert snapshot(root) == before

        (root / "corpus" / "a.txt").chmod(0o000)
        fails_with(
            "error: corpus/a.txt: permission denied (not readable or not writable by this user)"
        )
        (root / "corpus" / "a.txt").chmod(0o644)
        (root / "data").chmod(0o555)
        fails_with("error: data: folder is not writable, cannot write data/ingested")
        (root / "data").chmod(0o755)
        (root / "data" / "ingested" / "train").chmod(0o555)
        fails_with(
            "error: data/ingested/train: folder is not writable, so the previous data/ingested "
            "cannot be replaced; the previous output and metrics are unchanged"
        )
        (root / "data" / "ingested" / "train").chmod(0o755)
        (root / "metrics").chmod(0o555)
        fails_with("error: metrics: folder is not writable, cannot write metrics/ingest.json")
        (root / "metrics").chmod(0o755)
        assert run_stage_in_process(root) == 0  # with everything writable again, it runs
        assert snapshot(root) != before
        assert not [p for p in (root / "data").iterdir() if p.name.startswith(".")]


def test_staging_folders_of_a_killed_run_are_cleaned_by_the_next_run(project):
    dead = dead_pid()
    (project / "data" / f".ingested.tmp-{dead}" / "train").mkdir(parents=True)
    (project / "metrics" / f".ingest.json.tmp-{dead}").write_text("{}")
    result = run_ingest_stage(project)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (project / "data").iterdir()) == ["ingested"]
    assert sorted(p.name for p in (project / "metrics").iterdir()) == ["ingest.json"]
