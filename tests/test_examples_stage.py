"""The examples stage end to end: real tokenizer, shards on disk, determinism, bad inputs."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from tests.support import REPO_ROOT, stage_env
from tokenizers import BertWordPieceTokenizer, Tokenizer, normalizers

from bertforge.errors import BertforgeError
from bertforge.examples import (
    IGNORE_INDEX,
    ExamplesParams,
    MaskingRule,
    SentenceTokenizer,
    check_inputs,
    collate_instances,
    read_meta,
    write_examples,
)
from bertforge.io import hash_path
from bertforge.schemas import DOCUMENT_ARROW_SCHEMA
from bertforge.shards import iter_batches, shard_files
from bertforge.vocab import VocabParams, load_tokenizer, train_tokenizer, write_tokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "su",
    "ta",
    "ri",
    "po",
    "ve",
    "da",
    "shu",
    "gri",
    "on",
    "el",
    "am",
    "bor",
    "qui",
    "zen",
    "fa",
    "tho",
]


def fixture_documents(count: int, seed: int) -> list[list[str]]:
    """Documents of made-up words, so that a small WordPiece vocabulary splits many words."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))

    def sentence() -> str:
        words = [word() for _ in range(rng.randint(3, 25))]
        return " ".join(words).capitalize() + rng.choice([".", "!", "?"])

    return [[sentence() for _ in range(rng.randint(1, 12))] for _ in range(count)]


def write_split(directory: Path, documents: list[list[str]], rows_per_shard: int = 100) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(documents), rows_per_shard)):
        rows = [
            {
                "doc_id": hashlib.sha256(" ".join(sentences).encode()).hexdigest()[:16],
                "source": "fixture",
                "sentences": sentences,
            }
            for sentences in documents[start : start + rows_per_shard]
        ]
        table = pa.Table.from_pylist(rows, schema=DOCUMENT_ARROW_SCHEMA)
        pq.write_table(table, directory / f"part-{part:05d}.parquet")


def build_vocab(tokenizer_dir: Path, train_dir: Path, lowercase: bool = True) -> Path:
    """data/tokenizer as the vocab stage writes it (a small vocabulary: many "##" pieces)."""
    params = VocabParams(
        vocab_size=300,
        lowercase=lowercase,
        strip_accents=None,
        tokenize_chinese_chars=True,
        min_frequency=2,
        limit_alphabet=100,
        special_tokens=tuple(SPECIAL_TOKENS),
    )
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    write_tokenizer(train_tokenizer(train_dir, params), tokenizer_dir, params)
    return tokenizer_dir


def train_plain_tokenizer(directory: Path, documents, special_tokens) -> Path:
    """A tokenizer made with `tokenizers` alone, to get one the vocab stage would refuse."""
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(
        (" ".join(document) for document in documents),
        vocab_size=300,
        special_tokens=special_tokens,
        show_progress=False,
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer.save_model(str(directory))
    return directory


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ingested (train 400 documents in 4 shards, heldout 30) and data/tokenizer."""
    root = tmp_path_factory.mktemp("examples-project")
    write_split(root / "data/ingested/train", fixture_documents(400, seed=1))
    write_split(root / "data/ingested/heldout", fixture_documents(30, seed=2))
    build_vocab(root / "data/tokenizer", root / "data/ingested/train")
    return root


def small_params(**overrides) -> ExamplesParams:
    values = {"negative_pool_size": 64, "num_proc": 1, "dupe_factor": 2}
    return ExamplesParams(**(values | overrides))


def make_examples(project: Path, output: Path, params: ExamplesParams) -> dict:
    inputs = check_inputs(project / "data/ingested", project / "data/tokenizer", params)
    return write_examples(inputs, output, params, progress=False)


def read_split(directory: Path) -> pa.Table:
    return pa.Table.from_batches(list(iter_batches(directory)))


# --- tokenization -----------------------------------------------------------------------------

TRICKY_SENTENCES = [
    "ΟΔΟΣ ΟΔΟΣ. Σ alone, ΑΣ-ΒΣ and ΣΑ.",  # final sigma depends on the letters around it
    "Naïve café, e\u0301 and \u00c5ngstr\u00f6m; İstanbul.",  # accents, combining marks
    "tab\there, nbsp\u00a0x, thin\u2009space, line\u2028sep, para\u2029sep.",
    "ctrl\x01x, unit\x1fsep, nel\x85z, zero\u200bwidth, bom\ufeffz, \ufffdrepl.",
    "double  space,   triple, trailing space ",
    "CJK 中文字 and かな, emoji 🙂, fullwidth ＡＢＣ！",
    "[MASK] literal [SEP] text [CLS]",
    "a-b,c.d!e?f;g:h(i)j[k]l{m}n\"o'p`q~r@s#t$u%v^w&x*y+z=0|1\\2/3<4>5",
    "x" * 250 + " long word",
    "kalomi kalo mi ka lomine sutari povedashu grionelam borquizen fatho",
]


@pytest.mark.parametrize("lowercase", [True, False])
def test_sentence_tokenizer_gives_the_ids_of_whole_sentence_encoding(project, tmp_path, lowercase):
    directory = project / "data/tokenizer"
    if not lowercase:
        directory = build_vocab(
            tmp_path / "cased", project / "data/ingested/train", lowercase=False
        )
    tokenizer = load_tokenizer(directory)
    sentences = TRICKY_SENTENCES + [s for d in fixture_documents(50, seed=5) for s in d]
    expected = [e.ids for e in tokenizer.encode_batch(sentences, add_special_tokens=False)]
    memo = SentenceTokenizer(load_tokenizer(directory), np.dtype("uint16"), 40)
    assert memo.fast_path is not None and memo.fast_path.lowercase == lowercase
    for _ in range(2):  # the second time from the memo
        token_ids, lengths = memo.encode(pa.array(sentences))
        assert lengths.tolist() == [len(ids) for ids in expected]
        assert token_ids.tolist() == [i for ids in expected for i in ids]
    for sentence, ids in zip(sentences, expected, strict=True):  # a small memo starts afresh
        assert memo.encode(pa.array([sentence]))[0].tolist() == ids
        assert len(memo.word_number) <= 40 + len(sentence) + 1  # pieces: a character or more


def test_fast_path_is_left_unused_when_it_disagrees_with_the_full_pipeline(project):
    altered = Tokenizer.from_str(load_tokenizer(project / "data/tokenizer").to_str())
    altered.normalizer = normalizers.Sequence([altered.normalizer, normalizers.Replace("e", "a")])
    altered.encode_special_tokens = True
    memo = SentenceTokenizer(altered, np.dtype("uint16"))
    assert memo.fast_path is None
    expected = altered.encode_batch(TRICKY_SENTENCES, add_special_tokens=False)
    assert memo.encode(pa.array(TRICKY_SENTENCES))[0].tolist() == [
        i for encoding in expected for i in encoding.ids
    ]


# --- outputs ----------------------------------------------------------------------------------


def test_examples_follow_the_contract_and_meta_describes_them(project, tmp_path):
    params = small_params()
    metrics = make_examples(project, tmp_path, params)
    meta = read_meta(tmp_path)
    vocab = (project / "data/tokenizer/vocab.txt").read_text().splitlines()
    assert meta["vocab_size"] == len(vocab) and meta["id_dtype"] == "uint16"
    assert (
        meta["vocab_digest"]
        == hashlib.sha256((project / "data/tokenizer/vocab.txt").read_bytes()).hexdigest()
    )
    assert meta["special_token_ids"] == {token: vocab.index(token) for token in SPECIAL_TOKENS}
    for split in ("train", "heldout"):
        table = read_split(tmp_path / split)
        assert table.schema.field("input_ids").type == pa.list_(pa.uint16())
        assert meta["instances"][split] == len(table) == metrics[split]["instances"]
        documents = len(read_split(project / "data/ingested" / split))  # 400 and 30
        units = -(-documents // params.negative_pool_size)  # the last one shorter, not single
        assert len(shard_files(tmp_path / split)) == units, "one shard per work unit"
    train = metrics["train"]
    assert 0.12 < train["masked_fraction"] < 0.16
    assert abs(train["masked_as_mask_ratio"] - 0.8) < 0.03
    assert 0.5 <= train["nsp_random_next_ratio"] < 0.9, "0.5 plus the one-sentence chunks"
    assert 0.3 < train["mean_fill_ratio"] <= 1.0


def test_shards_are_byte_identical_whatever_num_proc(project, tmp_path):
    make_examples(project, tmp_path / "one", small_params(num_proc=1))
    make_examples(project, tmp_path / "two", small_params(num_proc=2))
    assert len(shard_files(tmp_path / "one/train")) > 1
    assert hash_path(tmp_path / "one") == hash_path(tmp_path / "two")
    make_examples(project, tmp_path / "other-seed", small_params(random_seed=7))
    assert hash_path(tmp_path / "one") != hash_path(tmp_path / "other-seed")


def test_whole_word_mask_never_splits_a_word_of_the_real_tokenizer(project, tmp_path):
    make_examples(project, tmp_path, small_params(whole_word_mask=True))
    vocab = (project / "data/tokenizer/vocab.txt").read_text().splitlines()
    continuation = np.array([token.startswith("##") for token in vocab])
    table = read_split(tmp_path / "train").to_pylist()
    split_words = masked_pieces = 0
    for row in table:
        original = np.array(row["input_ids"])
        original[row["masked_lm_positions"]] = row["masked_lm_ids"]
        chosen = set(row["masked_lm_positions"])
        for word in words_of(original, continuation):
            split_words += bool(chosen & set(word)) and not set(word) <= chosen
            masked_pieces += len(word) > 1 and set(word) <= chosen
    assert split_words == 0
    assert masked_pieces > 100, "the fixture does mask multi-piece words"


def words_of(token_ids: np.ndarray, continuation: np.ndarray) -> list[list[int]]:
    """Positions grouped into words: a "##" piece joins the word before; [CLS]/[SEP] end words."""
    words: list[list[int]] = []
    previous_special = True
    for position, token in enumerate(token_ids.tolist()):
        special = token in (2, 3)
        if not special:
            if continuation[token] and not previous_special:
                words[-1].append(position)
            else:
                words.append([position])
        previous_special = special
    return words


def test_dynamic_masking_stores_instances_unmasked_and_collate_masks_them(project, tmp_path):
    make_examples(project, tmp_path, small_params(masking="dynamic"))
    meta = read_meta(tmp_path)
    batch = next(iter_batches(tmp_path / "train", batch_size=64))
    stored = batch.column("input_ids").flatten().to_numpy()
    assert not (stored == meta["special_token_ids"]["[MASK]"]).any()
    assert batch.column("masked_lm_positions").flatten().to_pylist() == []

    vocab = json.loads((project / "data/tokenizer/tokenizer.json").read_text())["model"]["vocab"]
    rule = MaskingRule.from_meta(meta, vocab)
    inputs = collate_instances(batch, 0, 20, (rule, np.random.default_rng(0)))
    again = collate_instances(batch, 0, 20, (rule, np.random.default_rng(0)))
    assert all((inputs[key] == again[key]).all() for key in inputs), "same generator, same masks"
    lengths = inputs["attention_mask"].sum(axis=1)
    counts = (inputs["masked_lm_labels"] != IGNORE_INDEX).sum(axis=1)
    assert (counts == np.minimum(20, np.maximum(1, np.rint(lengths * 0.15)))).all()


def test_collate_instances_pads_and_derives_token_types_and_labels(project, tmp_path):
    make_examples(project, tmp_path, small_params())
    batch = next(iter_batches(tmp_path / "train", batch_size=32))
    inputs = collate_instances(batch, 0, 20, pad_to=128)
    rows = batch.to_pylist()
    assert inputs["input_ids"].shape == (32, 128) and inputs["masked_lm_positions"].shape == (
        32,
        20,
    )
    for index, row in enumerate(rows):
        length = len(row["input_ids"])
        assert inputs["input_ids"][index, :length].tolist() == row["input_ids"]
        assert inputs["attention_mask"][index].sum() == length
        token_types = inputs["token_type_ids"][index]
        assert token_types[:length].tolist() == [
            int(position >= row["segment_b_start"]) for position in range(length)
        ]
        positions = row["masked_lm_positions"]
        assert inputs["labels"][index, positions].tolist() == row["masked_lm_ids"]
        assert (inputs["labels"][index] != IGNORE_INDEX).sum() == len(positions)
        assert inputs["next_sentence_label"][index] == row["next_sentence_label"]


# --- bad inputs -------------------------------------------------------------------------------


def broken_copy(project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(project / "data", copy / "data")
    return copy


def expect_input_error(copy: Path, message: str, params: ExamplesParams | None = None) -> None:
    with pytest.raises(BertforgeError, match=message):
        check_inputs(copy / "data/ingested", copy / "data/tokenizer", params or small_params())


def test_missing_ingested_split_is_an_error(project, tmp_path):
    copy = broken_copy(project, tmp_path)
    shutil.rmtree(copy / "data/ingested/heldout")
    expect_input_error(copy, r"data/ingested/heldout: not found \(run the ingest stage first\)")


def test_ingested_split_without_documents_is_an_error(project, tmp_path):
    copy = broken_copy(project, tmp_path)
    shutil.rmtree(copy / "data/ingested/train")
    (copy / "data/ingested/train").mkdir()
    pq.write_table(
        DOCUMENT_ARROW_SCHEMA.empty_table(), copy / "data/ingested/train/part-00000.parquet"
    )
    expect_input_error(copy, "data/ingested/train: no documents")


def test_missing_tokenizer_is_an_error(project, tmp_path):
    copy = broken_copy(project, tmp_path)
    (copy / "data/tokenizer/tokenizer.json").unlink()
    expect_input_error(copy, "data/tokenizer/tokenizer.json: not found")


def test_tokenizer_json_and_vocab_txt_that_disagree_are_an_error(project, tmp_path):
    copy = broken_copy(project, tmp_path)
    vocab = (copy / "data/tokenizer/vocab.txt").read_text().splitlines()
    vocab[10], vocab[11] = vocab[11], vocab[10]
    (copy / "data/tokenizer/vocab.txt").write_text("\n".join(vocab) + "\n")
    expect_input_error(copy, "data/tokenizer/vocab.txt: disagrees with tokenizer.json")


def test_tokenizer_without_a_special_token_is_an_error(project, tmp_path):
    copy = broken_copy(project, tmp_path)
    shutil.rmtree(copy / "data/tokenizer")
    train_plain_tokenizer(copy / "data/tokenizer", fixture_documents(50, 3), SPECIAL_TOKENS[:4])
    expect_input_error(copy, r"special token \[MASK\] is missing")


def test_nsp_on_a_split_with_a_single_document_is_an_error(project, tmp_path):
    copy = broken_copy(project, tmp_path)
    shutil.rmtree(copy / "data/ingested/heldout")
    write_split(copy / "data/ingested/heldout", fixture_documents(1, seed=4))
    expect_input_error(copy, "data/ingested/heldout: nsp needs at least two documents")
    check_inputs(
        copy / "data/ingested", copy / "data/tokenizer", replace(small_params(), nsp=False)
    )


# --- the stage script -------------------------------------------------------------------------


def run_stage(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages/examples.py")],
        cwd=cwd,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_stage_writes_examples_then_a_bad_input_fails_in_one_line_leaving_them_intact(
    project, tmp_path
):
    copy = broken_copy(project, tmp_path)
    section = {"negative_pool_size": 64, "num_proc": 2, "dupe_factor": 1}
    (copy / "params.yaml").write_text(yaml.safe_dump({"examples": section}))
    first = run_stage(copy)
    assert first.returncode == 0, first.stderr
    metrics = json.loads((copy / "metrics/examples.json").read_text())
    assert metrics["train"]["instances"] == read_meta(copy / "data/examples")["instances"]["train"]
    before = hash_path(copy / "data/examples")

    vocab = (copy / "data/tokenizer/vocab.txt").read_text().splitlines()
    (copy / "data/tokenizer/vocab.txt").write_text("\n".join(vocab[:-1]) + "\n")
    failed = run_stage(copy)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("error: data/tokenizer/vocab.txt: disagrees with tokenizer.json")
    assert hash_path(copy / "data/examples") == before

    (copy / "params.yaml").write_text(yaml.safe_dump({"examples": section | {"max_seq_length": 7}}))
    failed = run_stage(copy)
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        "error: params.yaml: examples.max_seq_length must be in [8, 32767], got 7"
    )
    assert hash_path(copy / "data/examples") == before
