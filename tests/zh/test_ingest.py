"""Chinese in ingest: sentences end at 。！？ with their closing quotes, hard-wrapped lines join
without a space between Chinese characters, and a file in a legacy encoding is a one-line error."""

from __future__ import annotations

from pathlib import Path

from bertforge.ingest.documents import DocumentRules, process_batch
from bertforge.ingest.readers import RawDocument
from bertforge.ingest.sentences import make_sentence_splitter, splitter_for
from bertforge.ingest.zh import chinese_splitter, join_wrapped_lines
from bertforge.io import hash_path
from tests.factories import (
    ingest_error,
    ingest_params,
    make_ingest_project,
    run_ingest,
    run_ingest_stage,
    stage_error_lines,
    write_txt,
)

split = chinese_splitter()


def test_sentences_end_at_chinese_terminal_punctuation() -> None:
    assert split("今天下雨了。我们在家吧！你同意吗？好。") == [
        "今天下雨了。", "我们在家吧！", "你同意吗？", "好。",
    ]  # fmt: skip


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    assert split("他说：“天气很好。”我们出去吧。（这是括注。）最后一句") == [
        "他说：“天气很好。”", "我们出去吧。", "（这是括注。）", "最后一句",
    ]  # fmt: skip
    assert split("『引号里的引号。』外面的句子。") == ["『引号里的引号。』", "外面的句子。"]


def test_commas_semicolons_and_colons_do_not_end_a_sentence() -> None:
    couplet = "造花唤作小儿，切莫受渠戏弄；天地丸为大块，须要任我炉锤。"
    assert split(couplet) == [couplet]


def test_runs_of_stops_and_ellipses_end_one_sentence() -> None:
    assert split("真的吗？！我不信。好的……那就这样吧。") == [
        "真的吗？！", "我不信。", "好的……", "那就这样吧。",
    ]  # fmt: skip


def test_full_stops_inside_numbers_urls_and_abbreviations_end_nothing() -> None:
    text = "增长了3.5%。访问 www.debian.org 获取。他是 Dr. Smith 的学生。我们使用 U.S. 标准。"
    assert split(text) == [
        "增长了3.5%。",
        "访问 www.debian.org 获取。",
        "他是 Dr. Smith 的学生。",
        "我们使用 U.S. 标准。",
    ]


def test_language_zh_uses_the_chinese_rules_and_english_keeps_sentencex() -> None:
    assert splitter_for("zh") == "zh_rules"
    assert splitter_for("en") == "sentencex"
    assert make_sentence_splitter("zh_rules", "zh")("一。二。") == ["一。", "二。"]


def test_wrapped_lines_join_without_a_space_between_chinese_characters() -> None:
    text = "很难避免遇到与你意见不和，或者难以合作\n的人。请接受这一\n“事实”。"
    assert (
        join_wrapped_lines(text) == "很难避免遇到与你意见不和，或者难以合作的人。请接受这一“事实”。"
    )


def test_wrapped_lines_keep_a_space_between_latin_words_and_next_to_latin() -> None:
    text = "the quick\nbrown fox 使用\nDebian 系统\n안녕\n하세요"
    assert join_wrapped_lines(text) == text  # the cleaning turns these breaks into spaces


def test_process_batch_joins_wrapped_lines_only_when_asked() -> None:
    raw = [
        RawDocument(
            "a.txt",
            "在 Debian 这种项目中，很难避免遇到难以合作\n的人。请接受这一事实。",
        )
    ]
    rules = DocumentRules(
        min_document_chars=1, min_sentences=1, language="zh", holdout_fraction=0.01, seed=0,
        splitter="zh_rules",
    )  # fmt: skip
    joined = process_batch(raw, DocumentRules(**{**rules.__dict__, "join_wrapped_lines": True}))
    assert joined.documents[0].sentences == [
        "在 Debian 这种项目中，很难避免遇到难以合作的人。", "请接受这一事实。",
    ]  # fmt: skip
    spaced = process_batch(raw, rules)
    assert "难以合作 的人。" in spaced.documents[0].sentences[0]


def test_ingest_with_language_zh_gives_chinese_sentences(tmp_path: Path) -> None:
    path = write_txt(
        tmp_path / "zh.txt", ["春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。"] * 1
    )
    params = ingest_params({"path": str(path)}, language="zh", join_wrapped_lines=True,
                           min_document_chars=1, holdout_fraction=0.01)  # fmt: skip
    _, train, heldout = run_ingest(params, tmp_path / "out")
    assert [row["sentences"] for row in train + heldout] == [
        ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"]
    ]


def test_a_gbk_file_is_an_error_naming_it_and_suggesting_iconv(tmp_path: Path) -> None:
    path = tmp_path / "gbk.txt"
    path.write_bytes("今天天气很好。我们出去吧！\n".encode("gbk"))
    message = ingest_error(ingest_params({"path": str(path)}, language="zh"), tmp_path)
    assert message.startswith(f"{path}: line 1: not valid UTF-8 at byte offset 0; ")
    assert "legacy Chinese or Japanese encoding" in message and "iconv -f GBK -t UTF-8" in message


def test_a_big5_file_is_an_error_suggesting_iconv(tmp_path: Path) -> None:
    path = tmp_path / "big5.txt"
    path.write_bytes("今天天氣很好。我們出去吧！\n".encode("big5"))
    message = ingest_error(ingest_params({"path": str(path)}, language="zh"), tmp_path)
    assert f"{path}: line 1: not valid UTF-8" in message and "-f BIG5" in message


def test_stage_with_a_gb2312_file_exits_2_in_one_line_and_keeps_the_previous_output(
    tmp_path: Path,
) -> None:
    project = make_ingest_project(tmp_path / "project")
    assert run_ingest_stage(project).returncode == 0
    before = hash_path(project / "data/ingested")
    (project / "corpus" / "b.txt").write_bytes("床前明月光，疑是地上霜。\n".encode("gb2312"))
    result = run_ingest_stage(project)
    assert result.returncode == 2
    (line,) = stage_error_lines(result)
    assert "corpus/b.txt: line 1: not valid UTF-8" in line and "iconv -f GBK" in line
    assert hash_path(project / "data/ingested") == before


def test_wrapped_lines_with_crlf_and_ideographic_spaces_join_too() -> None:
    assert join_wrapped_lines("床前明月光，\r\n　疑是地上霜。") == "床前明月光，疑是地上霜。"


def test_a_latin1_file_gets_the_general_iconv_hint(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\xe9 au lait is served here every day.\n".encode("latin-1"))
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert message.endswith("convert it to UTF-8, e.g. `iconv -f LATIN1 -t UTF-8 FILE > FILE.utf8`")
