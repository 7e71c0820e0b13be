"""Right-to-left text for the PDF: Arabic letters joined, runs put in the order they are drawn.

A PDF shows glyphs left to right where the content stream puts them; it knows nothing of
Arabic joining or of right-to-left order. So a string goes through two steps before it is
drawn (`visual`): `arabic-reshaper` replaces each Arabic letter by its contextual form (the
Presentation Forms blocks: initial, medial, final, isolated, and the lam-alef ligatures) and
`python-bidi` (the Unicode bidirectional algorithm) reverses the right-to-left runs. Hebrew
needs only the second step. Strings without a right-to-left character are returned as they
are, at the cost of one regular-expression search.

The fonts' ToUnicode maps then say which letters a drawn presentation form stands for
(`logical_text`, its compatibility decomposition), so a PDF reader that puts right-to-left
runs back in reading order (pypdf, poppler, browsers) extracts the string as it was written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from arabic_reshaper import ArabicReshaper
from arabic_reshaper.ligatures import LIGATURES
from bidi import get_display

# Hebrew, Arabic, Syriac, Thaana, N'Ko... and the presentation forms of Hebrew and Arabic.
_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff]")
_PRESENTATION_FORMS = ((0xFB1D, 0xFDFF), (0xFE70, 0xFEFC))


def make_reshaper(has_glyph: Callable[[int], bool]) -> ArabicReshaper:
    """A reshaper that keeps harakat (a user's text prints as written, marks included) and
    forms only the ligatures the font can draw (DejaVu has lam-alef, not the word ligatures:
    a ligature without a glyph would print as a box)."""
    config: dict[str, bool] = {
        "delete_harakat": False,
        # Reversed, a mark precedes its letter; DejaVu's zero-width marks are drawn to the
        # right of where they stand, over that letter (shifting them misplaces them by one).
        "shift_harakat_position": False,
        "support_ligatures": True,
    }
    for name, (_, forms) in LIGATURES:
        config[name] = all(has_glyph(ord(ch)) for form in forms if form for ch in form)
    return ArabicReshaper(configuration=config)


def make_visual(has_glyph: Callable[[int], bool]) -> Callable[[str], str]:
    """`visual(text)`: the string in the order and shapes the PDF draws it, for a font that
    has the glyphs `has_glyph` says (its caller caches: a report draws the same labels and
    cells many times)."""
    reshape = make_reshaper(has_glyph).reshape

    def visual(text: str) -> str:
        if not _RTL.search(text):
            return text
        if _ARABIC.search(text):
            text = reshape(text)
        return str(get_display(text))

    return visual


def is_presentation_form(code: int) -> bool:
    return any(low <= code <= high for low, high in _PRESENTATION_FORMS)


def logical_text(code: int) -> str:
    """What a drawn character stands for, for the ToUnicode map: a presentation form's
    letters (U+FEFB, the lam-alef ligature, is "لا"), any other character itself."""
    char = chr(code)
    if not is_presentation_form(code):
        return char
    return unicodedata.normalize("NFKC", char) or char
