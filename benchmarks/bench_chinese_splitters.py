"""Compare sentence splitters for Chinese (`ingest.language: zh`): boundaries on a gold set, speed.

Quality: 40 hand-labelled Chinese passages with the traps of Chinese text: closing quotes and
brackets after the stop (。” ！」 。）), ？！ runs, ellipses (…… and ...), decimals and versions
(3.5%, v2.0), URLs and file names, English words and sentences inside Chinese, book titles
《》, commas and semicolons that do not end a sentence (poems, parallel clauses), half-width
!? in Chinese text. Labelling conventions: a sentence ends after 。！？ (either width) or an
ellipsis, with the closing quotes and brackets that follow; ；and ：end nothing; a quoted
sentence followed by its speech tag (“你来了吗？”她问。) is one sentence with it.
Each passage is the gold sentences joined without a space, as Chinese is written; a boundary is
the offset (in non-space characters) where a sentence ends inside a passage. Precision, recall
and F1 are pooled over all passages; "passages exact" counts passages split exactly as the gold.

Speed: sentences per second and MB per second on the cleaned documents of the Chinese corpus
(hard-wrapped lines joined), in this process, one core. Scored and timed by the English
benchmark's code (benchmarks/bench_sentence_splitters.py).

Run: python benchmarks/bench_chinese_splitters.py [--corpus 'data/raw/corpus-zh/*.txt.xz']
(about 10 s; spaCy is compared when it is installed: pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
from datetime import date

from bench_sentence_splitters import print_comparison
from machine import machine

from bertforge.ingest.cleaning import clean_text
from bertforge.ingest.params import IngestParams, SourceParams
from bertforge.ingest.readers import read_documents
from bertforge.ingest.sources import resolve_sources
from bertforge.ingest.zh import join_wrapped_lines

GOLD: list[list[str]] = [
    ["他说：“今天天气很好。”", "我们出去吧！"],
    ["“你来了吗？”她问。", "没有人回答。"],
    ["真的吗？！", "我不信。"],
    ["好的……", "那就这样吧。"],
    ["他沉默了很久...", "终于开口了。"],
    ["（这是括号里的话。）", "括号外面还有一句。"],
    ["今年的经济增长了3.5%。", "分析师感到意外。"],
    ["Debian 12.4 已经发布。", "请及时升级系统。"],
    ["请访问 www.debian.org 获取更多信息。", "网站是免费的。"],
    ["配置文件是 /etc/default/grub。", "修改后要运行 update-grub。"],
    ["《红楼梦》是一部伟大的小说。", "它的作者是曹雪芹。"],
    ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"],
    ["造花唤作小儿，切莫受渠戏弄；天地丸为大块，须要任我炉锤。"],
    ["天下有道，却走马以粪；天下无道，戎马生于郊。", "祸莫大于不知足。"],
    ["他用的是 Python 3.11 版本。", "运行速度很快。"],
    ["这个命令叫 git log.", "它显示提交历史。"],
    ["What is BERT?", "它是一种语言模型。"],
    ["老师说：“学而时习之，不亦说乎？”", "学生们都点头。"],
    ["「你好嗎？」他問。", "「我很好。」她答。"],
    ["他大喊：“快跑！”", "大家都跑了。"],
    ["我想了想：这件事不能再拖了。", "于是我打了电话。"],
    ["价格是 4.99 元。", "上周是 5.49 元。"],
    ["第1.2节介绍了方法。", "第2节给出结果。"],
    ["怎么办？", "我也不知道！", "问问别人吧。"],
    ["你知道吗?", "他昨天走了!"],
    ["她轻声说：“再见……”", "然后离开了。"],
    ["这就是所谓的“自由软件”。", "它尊重用户的自由。"],
    ["请参阅 man 1 ls（或者 info ls）。", "那里有详细说明。"],
    ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"],
    ["会当凌绝顶，一览众山小。"],
    ["他是 Dr. Smith 的学生。", "他们在北京见面。"],
    ["我们使用 U.S. 标准。", "这个标准很旧。"],
    ["『这是引号里的引号。』", "外面的句子。"],
    ["例如：苹果、香蕉、橘子等。", "这些都是水果。"],
    ["第一，要有礼貌；第二，要有耐心。", "这两点很重要。"],
    ["为什么？", "因为我说了算。"],
    ["他问我：“你去哪儿？”", "我说：“回家。”"],
    ["这是第一句。", "这是第二句。", "这是第三句。"],
    ["软件包 python3-jieba 提供分词。", "版本号是 0.42.1。"],
    ["哎呀！", "我的钥匙丢了……", "怎么办呢？"],
]


def splitters() -> tuple[str, ...]:
    installed = importlib.util.find_spec("spacy") is not None
    return ("sentencex", "zh_rules", *(("spacy",) if installed else ()))


def corpus_texts(pattern: str) -> list[str]:
    """The cleaned documents of the Chinese corpus, hard-wrapped lines joined."""
    params = IngestParams(
        sources=(SourceParams(path=pattern),),
        text_column="text",
        min_document_chars=0,
        min_sentences=1,
        max_document_chars=10**7,
        language="zh",
        holdout_fraction=0.5,
        seed=0,
        num_proc=1,
        rows_per_shard=1,
    )
    documents = read_documents(resolve_sources(params), params.max_document_chars)
    return [
        text for document in documents if (text := clean_text(join_wrapped_lines(document.text)))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/raw/corpus-zh/*.txt.xz")
    args = parser.parse_args()
    texts = corpus_texts(args.corpus)
    size = sum(len(text.encode()) for text in texts) / 1e6
    print(
        f"{machine()}, Python "
        f"{platform.python_version()}, {date.today()}; gold: {len(GOLD)} passages, "
        f"{sum(len(gold) - 1 for gold in GOLD)} boundaries; speed: {len(texts)} documents, "
        f"{size:.2f} MB of {args.corpus}"
    )
    print()
    # the English benchmark's scorer; a passage is its gold sentences joined without a space
    print_comparison(splitters(), "zh", GOLD, "", texts)


if __name__ == "__main__":
    main()
