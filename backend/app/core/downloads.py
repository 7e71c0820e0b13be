"""A downloaded file's name: the report's title as its author wrote it, in any script.

`content_disposition` writes the header of RFC 6266 with both forms of the name: `filename*`
(RFC 5987/8187: UTF-8, percent-encoded), which every current browser and HTTP client prefers,
and a plain `filename="..."` in ASCII for those that know only that. `download_name` makes
the name from a job's title: only what no file system accepts (path separators, control
characters, the characters Windows forbids) is replaced.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import quote

MAX_NAME_BYTES = 200
# RFC 8187 attr-char, besides letters and digits: what stays unencoded in `filename*`.
_ATTR_CHARS = "!#$&+-.^_`|~"
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
# `%` is left out: some browsers percent-decode even the plain `filename=`.
_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()\[\]+,@&'!#$^~-]+")
# Letters with no decomposition to an ASCII base (ł is not l + a combining mark); dotless i,
# dashes and typographic quotes (escaped: they look like ASCII).
_TRANSLIT = str.maketrans(
    {
        "Ł": "L",
        "ł": "l",
        "Đ": "D",
        "đ": "d",
        "Ø": "O",
        "ø": "o",
        "Ħ": "H",
        "ħ": "h",
        "\u0131": "i",
        "ß": "ss",
        "Æ": "AE",
        "æ": "ae",
        "Œ": "OE",
        "œ": "oe",
        "Þ": "Th",
        "þ": "th",
        "\u2013": "-",
        "\u2014": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": "'",
        "\u201d": "'",
        "\u201e": "'",
    }
)


def download_name(title: object, stored: str) -> str:
    """`title` as a file name with the stored file's extension (`stored` itself when the
    job has no title, or a title with nothing printable). At most `MAX_NAME_BYTES` of UTF-8:
    most file systems allow 255 bytes in a name, whatever the script."""
    suffix = PurePosixPath(stored).suffix
    if not isinstance(title, str):
        return stored
    text = unicodedata.normalize("NFC", title)
    stem = _FORBIDDEN.sub("-", "".join(ch if ch.isprintable() else " " for ch in text))
    stem = re.sub(r"\s+", " ", stem).strip(" .-")
    while len((stem + suffix).encode()) > MAX_NAME_BYTES:
        stem = stem[:-1].rstrip(" .-")
    return stem + suffix if stem else stored


def ascii_fallback(filename: str) -> str:
    """The name for clients that read only `filename=`: accents dropped (Zürich: Zurich),
    a few letters spelled out (Łódź: Lodz), anything else without an ASCII form a `_`; a
    name with no ASCII letter at all is "download" with its extension."""
    path = PurePosixPath(filename)
    suffix = path.suffix if path.suffix.isascii() else ""
    stem = filename[: len(filename) - len(suffix)] if suffix else filename
    decomposed = unicodedata.normalize("NFKD", stem.translate(_TRANSLIT))
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = re.sub(r"_+", "_", _ASCII_UNSAFE.sub("_", text)).strip(" ._")
    if not re.search(r"[A-Za-z0-9]", text):
        text = "download"
    return text + _ASCII_UNSAFE.sub("", suffix)


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """`attachment; filename="ASCII"; filename*=UTF-8''percent-encoded` (the second form only
    when the name is not plain ASCII already)."""
    fallback = ascii_fallback(filename)
    header = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHARS)}"
    return header
