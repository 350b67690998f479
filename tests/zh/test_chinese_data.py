"""scripts/build_chinese_data.py: fortunes-zh's files → corpus documents, byte-identical on a
rebuild; and the committed data/raw/corpus-zh files keep the corpus format."""

from __future__ import annotations

import importlib.util
import lzma
import re
from pathlib import Path

from tests.support import REPO_ROOT

spec = importlib.util.spec_from_file_location(
    "build_chinese_data", REPO_ROOT / "scripts" / "build_chinese_data.py"
)
builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)

RED, END = "\x1b[32m", "\x1b[m"
FORTUNES = {
    "chinese": (
        "要有礼貌\n\n在 Debian 这种规模的项目中，很难避免遇到与你意见不和，或者难以合作\n"
        "的人。请接受这一事实，并保持礼貌。\n\n"
        f"\x1b[33m    -- Debian {RED}《行为准则》{END}第一条{END}\n"
        "%\n天下有道，却走马以粪。\n天下无道，戎马生于郊。\n    --《道德经》\n"
        "%\n狗咬穿烂的。\n    --《谚语》\n"
        "%\n天下有道，却走马以粪。\n天下无道，戎马生于郊。\n    --《道德经》\n"
        "%\n    ┌────┐\n    │ /etc/default/ 许多守护进程和服务的默认值 │\n"
        f"%\n子曰：“君子不器。”\n\x1b[33m -- 论语，为政篇{END}\n"
        f"%\n知者不言，言者不知。塞其兑，闭其门。\n{RED}-- 《道德经》{END}\n"
    ),
    "tang300": (
        f"{RED}《静夜思》{END}\n作者：李白\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n"
    ),
    "song100": "题目:《泪》\n作者:杨亿（９６４－１０２０）\n锦字梭停掩夜机，白头吟若怨新知。\n%\n",
}


def write_fortunes(directory: Path) -> Path:
    directory.mkdir()
    for name, text in FORTUNES.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def corpus_documents(path: Path) -> list[str]:
    return lzma.decompress(path.read_bytes()).decode("utf-8").removesuffix("\n").split("\n\n")


def test_fortunes_become_documents_without_colours_attributions_titles_or_tables(
    tmp_path: Path,
) -> None:
    out = tmp_path / "corpus-zh"
    rows = builder.build(write_fortunes(tmp_path / "fortunes"), out)
    assert corpus_documents(out / "fortunes.txt.xz") == [
        "在 Debian 这种规模的项目中，很难避免遇到与你意见不和，或者难以合作\n"
        "的人。请接受这一事实，并保持礼貌。",  # the heading dropped, the hard wrap kept
        "天下有道，却走马以粪。\n天下无道，戎马生于郊。",
        "知者不言，言者不知。塞其兑，闭其门。",  # an attribution without indent goes too
    ]  # the short proverb, the repeat, the table and the 6-ideograph 君子不器 are dropped
    assert rows[0]["documents"] == 3 and rows[0]["dropped"] == 4
    assert corpus_documents(out / "tang300.txt.xz") == [
        "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
    ]
    assert corpus_documents(out / "song100.txt.xz") == ["锦字梭停掩夜机，白头吟若怨新知。"]


def test_documents_holding_a_held_out_quotation_whole_or_in_part_are_dropped(
    tmp_path: Path,
) -> None:
    out = tmp_path / "corpus-zh"
    fortunes = write_fortunes(tmp_path / "fortunes")
    # a short held-out quotation whole (punctuation aside), a long one by 10 characters in a row
    held_out = frozenset({"天下无道戎马生于郊", "哈哈在debian这种规模的项目中"})
    rows = builder.build(fortunes, out, held_out)
    assert corpus_documents(out / "fortunes.txt.xz") == ["知者不言，言者不知。塞其兑，闭其门。"]
    # the Debian paragraph and both copies of 天下有道 (a held-out repeat counts as held out)
    assert rows[0]["dropped_held_out"] == 3 and rows[0]["dropped"] == 6
    holds = builder.holds_held_out(held_out)
    assert holds("甲天下无道戎马生于郊乙") and holds("在debian这种规模的项目")
    assert not holds("天下无道戎马生于") and not holds("an这种规模的项目外")  # 9 in a row


def test_a_rebuild_is_byte_identical(tmp_path: Path) -> None:
    fortunes = write_fortunes(tmp_path / "fortunes")
    first = builder.build(fortunes, tmp_path / "first")
    second = builder.build(fortunes, tmp_path / "second")
    assert [row["sha256"] for row in first] == [row["sha256"] for row in second]
    for row in first:
        assert (tmp_path / "first" / row["file"]).read_bytes() == (
            tmp_path / "second" / row["file"]
        ).read_bytes()


def test_the_committed_corpus_keeps_the_format_and_the_recorded_hashes() -> None:
    readme = (REPO_ROOT / "data/raw/README.md").read_text(encoding="utf-8")
    for name in ("fortunes", "tang300", "song100"):
        path = REPO_ROOT / "data/raw/corpus-zh" / f"{name}.txt.xz"
        text = lzma.decompress(path.read_bytes()).decode("utf-8")
        assert text.endswith("\n") and "\n\n\n" not in text and "\x1b" not in text
        for document in corpus_documents(path):
            assert len(re.findall(builder.IDEOGRAPH, document)) >= builder.MIN_IDEOGRAPHS
        assert builder.sha256_of(path)[:16] in readme
