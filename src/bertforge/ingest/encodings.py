"""What to tell a user whose text file is not UTF-8: how to convert it.

Chinese plain text is still often GB2312/GBK/GB18030 (mainland) or Big5 (Taiwan, Hong Kong),
Japanese often Shift_JIS. The readers accept UTF-8 only and name the file and line; this adds
the `iconv` command that converts the file. It does not guess which legacy encoding a file is
in: Big5 bytes mostly decode as GBK too (into the wrong characters), so a guess would mislead.
"""

from __future__ import annotations

LEGACY_CJK_CODECS = ("gb18030", "big5", "shift_jis")


def legacy_encoding_hint(data: bytes) -> str:
    """How to convert a file whose bytes `data` are not UTF-8: with the Chinese and Japanese
    legacy encodings named when `data` decodes in one of them."""
    for codec in LEGACY_CJK_CODECS:
        try:
            data.decode(codec)
        except UnicodeDecodeError:
            continue
        return (
            "a legacy Chinese or Japanese encoding (GB2312/GBK, Big5, Shift_JIS)? convert it: "
            "`iconv -f GBK -t UTF-8 FILE > FILE.utf8` (or -f BIG5, -f SHIFT_JIS)"
        )
    return "convert it to UTF-8, e.g. `iconv -f LATIN1 -t UTF-8 FILE > FILE.utf8`"
