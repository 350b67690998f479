import pytest

from bertforge.io import atomic_directory, hash_path, write_json_atomic


def test_atomic_directory_replaces_output_only_on_success(tmp_path):
    final = tmp_path / "out"
    with atomic_directory(final) as staging:
        (staging / "a.txt").write_text("first")
    assert (final / "a.txt").read_text() == "first"

    with pytest.raises(RuntimeError), atomic_directory(final) as staging:
        (staging / "a.txt").write_text("half-written")
        raise RuntimeError("stage failed")
    assert (final / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    with atomic_directory(final) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]


def test_hash_path_changes_with_content_and_names(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("1")
    before = hash_path(tmp_path / "d")
    (tmp_path / "d" / "x").write_text("2")
    assert hash_path(tmp_path / "d") != before
    (tmp_path / "d" / "x").write_text("1")
    assert hash_path(tmp_path / "d") == before
    (tmp_path / "d" / "x").rename(tmp_path / "d" / "y")
    assert hash_path(tmp_path / "d") != before


def test_write_json_atomic_is_sorted_and_leaves_no_temp_file(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"b": 1, "a": 2})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
