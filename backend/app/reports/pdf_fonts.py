"""The PDF report's fonts: DejaVu Sans (regular and bold) with a CJK fallback, all embedded.

Helvetica, a base-14 font, is never embedded and knows only Latin-1: anything else printed
as boxes. The report uses two registered names instead, `SANS` and `SANS_BOLD`, each a
`UnicodeFont`: DejaVu Sans (Latin, Greek, Cyrillic, Hebrew, Arabic...), and for characters it
lacks Droid Sans Fallback (CJK ideographs, kana, Hangul). A string is split into runs by the
face that has each character, every run drawn with its own face, and right-to-left text is
shaped and reordered first (`pdf_bidi`). All of this happens in the font object, where
ReportLab measures (`stringWidth`) and encodes (`splitString`) text, so every platypus
paragraph and table, every canvas `drawString` and every chart label gets it with only the
font name changed; ReportLab embeds each face as subsets of the glyphs used (`ABCDEF+Name`).

The files ship in the package (`fonts/`, package data) with their licences; see
`fonts/README.md`. The fallback face (3.4 MB) is parsed only when a report needs it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from reportlab.lib.fonts import addMapping
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import SUBSETN, TTFont

from app.reports.pdf_bidi import is_presentation_form, logical_text, make_visual

FONT_DIR = Path(__file__).with_name("fonts")
SANS = "ReportSans"
SANS_BOLD = "ReportSans-Bold"
FAMILY_FILES = {SANS: "DejaVuSans.ttf", SANS_BOLD: "DejaVuSans-Bold.ttf"}
FALLBACK_FILES = {"ReportCJK": "DroidSansFallback.ttf"}

_FALLBACK_SHIFT = 16  # subset numbers of a fallback face: (its index + 1) << 16 | subset


class EmbeddedFont(TTFont):  # type: ignore[misc]  # reportlab has no type hints
    """A TrueType face embedded as subsets whose ToUnicode maps give the letters behind a
    shaped Arabic form, so text extraction finds the string that was written."""

    def addObjects(self, doc: Any) -> None:
        state = self.state.get(doc)
        subsets = [list(s) for s in state.subsets] if state is not None else []
        super().addObjects(doc)
        for n, subset in enumerate(subsets):
            if not any(is_presentation_form(code) for code in subset):
                continue
            base = b"".join((SUBSETN(n), b"+", self.face.name, self.face.subfontNameX))
            stream = doc.idToObject.get("toUnicodeCMap:" + base.decode("pdfdoc"))
            if stream is not None:
                stream.content = _to_unicode_cmap(base.decode("pdfdoc"), subset)


def _to_unicode_cmap(name: str, subset: Sequence[int]) -> str:
    """ReportLab's ToUnicode CMap (`ttfonts.makeToUnicodeCMap`), each code mapped to
    `logical_text` (UTF-16BE, so a ligature maps to its two letters)."""
    entries = [
        f"<{i:02X}> <{logical_text(code).encode('utf-16-be').hex().upper()}>"
        for i, code in enumerate(subset)
    ]
    return "\n".join(
        [
            "/CIDInit /ProcSet findresource begin",
            "12 dict begin",
            "begincmap",
            "/CIDSystemInfo",
            f"<< /Registry ({name})",
            f"/Ordering ({name})",
            "/Supplement 0",
            ">> def",
            f"/CMapName /{name} def",
            "/CMapType 2 def",
            "1 begincodespacerange",
            f"<00> <{len(subset) - 1:02X}>",
            "endcodespacerange",
            f"{len(subset)} beginbfchar",
            *entries,
            "endbfchar",
            "endcmap",
            "CMapName currentdict /CMap defineresource pop",
            "end",
            "end",
        ]
    )


class UnicodeFont(EmbeddedFont):
    """A primary face with fallback faces, measured and drawn run by run, right-to-left text
    shaped and reordered. Registered like any TTFont; ReportLab sees one dynamic font."""

    def __init__(self, name: str, filename: Path) -> None:
        super().__init__(name, str(filename))
        self._face_of: dict[str, int] = {}
        self._visual = make_visual(self.face.charToGlyph.__contains__)
        # Measured once and drawn at least once: a cell is clipped, then drawn (and
        # measured again by drawString); the same labels recur on every page.
        self._layout = lru_cache(maxsize=16_384)(self._lay_out)

    @property
    def fallbacks(self) -> list[EmbeddedFont]:
        return _fallbacks()

    def runs(self, text: str) -> list[tuple[int, str]]:
        """`text` (already in visual order) as (face, run): 0 is the primary face, i the
        fallback i - 1; a character no face has stays with the primary (its .notdef)."""
        face_of = self._face_of
        runs: list[tuple[int, str]] = []
        start, current = 0, -1
        for i, ch in enumerate(text):
            face = face_of.get(ch)
            if face is None:
                face = face_of[ch] = self._face_for(ord(ch))
            if face != current:
                if i > start:
                    runs.append((current, text[start:i]))
                start, current = i, face
        if text:
            runs.append((current, text[start:]))
        return runs

    def _face_for(self, code: int) -> int:
        if code in self.face.charToGlyph:
            return 0
        for i, fallback in enumerate(self.fallbacks, start=1):
            if code in fallback.face.charToGlyph:
                return i
        return 0

    def _lay_out(self, text: str) -> tuple[tuple[tuple[int, str], ...], float]:
        """`text` as drawn: its runs (in display order, one face each) and its width at 1 pt."""
        runs = tuple(self.runs(self._visual(text)))
        width = 0.0
        for face, run in runs:
            if face == 0:
                width += super().stringWidth(run, 1.0)
            else:
                width += self.fallbacks[face - 1].stringWidth(run, 1.0)
        return runs, width

    def stringWidth(self, text: str | bytes, size: float, encoding: str = "utf8") -> float:
        if isinstance(text, bytes):
            text = text.decode(encoding)
        if text.isascii():
            return float(super().stringWidth(text, size, encoding))
        return self._layout(text)[1] * size

    def splitString(self, text: str | bytes, doc: Any, encoding: str = "utf-8") -> list[Any]:
        if isinstance(text, bytes):
            text = text.decode(encoding)
        if text.isascii():
            return list(super().splitString(text, doc))
        out: list[Any] = []
        for face, run in self._layout(text)[0]:
            if face == 0:
                out += super().splitString(run, doc)
            else:
                tag = face << _FALLBACK_SHIFT
                out += [(tag | n, b) for n, b in self.fallbacks[face - 1].splitString(run, doc)]
        return out

    def getSubsetInternalName(self, subset: int, doc: Any) -> str:
        face = subset >> _FALLBACK_SHIFT
        if face:
            fallback = self.fallbacks[face - 1]
            return str(fallback.getSubsetInternalName(subset & 0xFFFF, doc))
        return str(super().getSubsetInternalName(subset, doc))


_lock = threading.Lock()
_loaded: dict[str, list[EmbeddedFont]] = {}


def _fallbacks() -> list[EmbeddedFont]:
    """The fallback faces, shared by both weights (CJK has one), parsed on first use: most
    reports never need the 3.4 MB CJK face."""
    faces = _loaded.get("fallbacks")
    if faces is None:
        with _lock:
            faces = _loaded.get("fallbacks")
            if faces is None:
                faces = _loaded["fallbacks"] = [
                    EmbeddedFont(name, str(FONT_DIR / filename))
                    for name, filename in FALLBACK_FILES.items()
                ]
    return faces


def register() -> tuple[str, str]:
    """Register `SANS` and `SANS_BOLD` (once per process) and their family, so `<b>` in a
    Paragraph picks the bold face; returns (regular, bold)."""
    with _lock:
        if "family" not in _loaded:
            for name, filename in FAMILY_FILES.items():
                pdfmetrics.registerFont(UnicodeFont(name, FONT_DIR / filename))
            # Italic maps to upright (there is no italic face), set first: the reverse map
            # (a face name to its family and style) keeps the last entry, the upright one.
            for italic in (1, 0):
                addMapping(SANS, 0, italic, SANS)
                addMapping(SANS, 1, italic, SANS_BOLD)
            _loaded["family"] = []
    return SANS, SANS_BOLD


register()  # importing this module is what makes SANS and SANS_BOLD usable
