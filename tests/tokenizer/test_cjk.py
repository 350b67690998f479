"""Tokenizer parity with the original BERT on Chinese, Japanese kana, Korean and mixed
Chinese-English text, and on the embedded Chinese corpus: our tokens equal those of the
independent reference (tests/reference_bert_tokenizer.py), in every casing variant."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from bertforge.tokenizer.files import load_tokenizer
from tests.factories import vocab_params, write_documents, write_trained_tokenizer
from tests.reference_bert_tokenizer import FullTokenizer
from tests.support import REPO_ROOT

CORPUS_ZH = REPO_ROOT / "data/raw/corpus-zh"

CJK_TEXTS = {
    "chinese": "在 Debian 这种规模的项目中，很难避免遇到与你意见不和的人。请接受这一事实！",
    "traditional chinese": "「你好嗎？」他問。臺灣的語言學家說：這是繁體字。",
    "classical poem": "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "japanese kana": "ひらがなとカタカナ、そして漢字を使います。ｶﾀｶﾅ（半角）もあります。",
    "japanese sentence": "東京は日本の首都です。私はコーヒーが好きだ！",
    "korean": "한국어 텍스트를 토큰화합니다. 서울은 대한민국의 수도입니다.",
    "mixed chinese english": "我们用BERT模型和PyTorch训练，accuracy达到了93.5%！Don't stop。",
    "full width forms": "ＡＢＣ１２３，全角字母ｄｅｆ和数字４５６。",
    "cjk punctuation": "《红楼梦》【注】〔一〕『引号』——破折号……省略号·间隔号",
    "ideograph extensions": "𠀀𠀁 𪜀 𫝀 𬺰 丽 兀",
    "vertical and compatibility forms": "︵︶ ﹁﹂ ㈱ ㍿ ㋿",
}

VARIANTS = {
    "uncased": {},
    "cased": {"lowercase": False},
    "lowercase keeping accents": {"strip_accents": False},
    "no cjk spacing": {"tokenize_chinese_chars": False},
}


def corpus_documents(name: str) -> list[str]:
    text = lzma.decompress((CORPUS_ZH / f"{name}.txt.xz").read_bytes()).decode("utf-8")
    return text.removesuffix("\n").split("\n\n")


def reference_for(directory: Path, params) -> FullTokenizer:
    return FullTokenizer.from_vocab_file(
        str(directory / "vocab.txt"),
        do_lower_case=params.lowercase,
        strip_accents=params.strip_accents,
        tokenize_chinese_chars=params.tokenize_chinese_chars,
    )


@pytest.fixture(scope="module")
def corpus_sample() -> tuple[list[str], list[str]]:
    """Every other document of the Chinese corpus to train on, every seventh to compare."""
    lines = [
        line
        for name in ("fortunes", "tang300", "song100")
        for document in corpus_documents(name)[:600]
        for line in document.split("\n")
    ]
    documents = [line for line in dict.fromkeys(lines) if line not in CJK_TEXTS.values()]
    return documents[0::2], documents[1::7]


@pytest.mark.parametrize("variant", VARIANTS)
def test_cjk_and_mixed_text_tokenize_as_original_bert(
    variant: str, corpus_sample: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    train, _ = corpus_sample
    write_documents(tmp_path / "train", [[line] for line in [*train, *CJK_TEXTS.values()]])
    params = vocab_params(vocab_size=6000, limit_alphabet=200, min_frequency=2,
                          **VARIANTS[variant])  # fmt: skip
    write_trained_tokenizer(tmp_path / "tokenizer", tmp_path / "train", params)
    ours = load_tokenizer(tmp_path / "tokenizer")
    reference = reference_for(tmp_path / "tokenizer", params)
    for name, text in CJK_TEXTS.items():
        assert ours.encode(text, add_special_tokens=False).tokens == reference.tokenize(text), name


def test_chinese_corpus_sentences_tokenize_as_original_bert_and_through_transformers(
    corpus_sample: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    train, compare = corpus_sample
    write_documents(tmp_path / "train", [[line] for line in train])
    params = vocab_params(vocab_size=8000, limit_alphabet=200, min_frequency=2)
    write_trained_tokenizer(tmp_path / "tokenizer", tmp_path / "train", params)
    ours = load_tokenizer(tmp_path / "tokenizer")
    reference = reference_for(tmp_path / "tokenizer", params)
    for text in compare:
        assert ours.encode(text, add_special_tokens=False).tokens == reference.tokenize(text)
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer"))
    for text in compare:
        assert auto(text)["input_ids"] == ours.encode(text).ids
