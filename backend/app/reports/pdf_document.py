"""The PDF's page templates and the lazily filled story that platypus lays out.

Three page templates (cover, portrait, landscape detail), a hook after every flowable that
drives progress (and with it, cancellation), and a story that pulls detail pages from an
iterator so only a few pages of rows exist in Python at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.platypus import BaseDocTemplate, Flowable, Frame, PageTemplate

from app.reports.pdf_fonts import register
from app.reports.pdf_styles import ACCENT, LINE, MARGIN, MUTED


def _frame(x: float, y: float, width: float, height: float, frame_id: str) -> Frame:
    return Frame(
        x,
        y,
        width,
        height,
        id=frame_id,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )


class ReportDoc(BaseDocTemplate):  # type: ignore[misc]  # reportlab has no type hints
    """Three page templates (cover, portrait, landscape detail) and a per-flowable hook that
    drives progress (and with it, cancellation)."""

    def __init__(self, path: Path, title: str, on_flowable: Callable[[], None]) -> None:
        self.sans, self.bold = register()
        super().__init__(
            str(path),
            pagesize=A4,
            # Not Helvetica: the canvas would put it in every page's resources.
            initialFontName=self.sans,
            title=title,
            author="Report job service",
            leftMargin=MARGIN,
            rightMargin=MARGIN,
            topMargin=MARGIN + 4,
            bottomMargin=MARGIN + 4,
        )
        self._on_flowable = on_flowable
        self.report_title = title
        pw, ph = A4
        lw, lh = landscape(A4)
        portrait = _frame(MARGIN, MARGIN + 4, pw - 2 * MARGIN, ph - 2 * MARGIN - 8, "p")
        wide = _frame(MARGIN, MARGIN + 4, lw - 2 * MARGIN, lh - 2 * MARGIN - 8, "l")
        cover = _frame(MARGIN + 10 * mm, MARGIN, pw - 2 * MARGIN - 20 * mm, ph * 0.62, "c")
        self.addPageTemplates(
            [
                PageTemplate(id="cover", frames=[cover], onPage=self._cover_page, pagesize=A4),
                PageTemplate(id="portrait", frames=[portrait], onPage=self._page, pagesize=A4),
                PageTemplate(
                    id="landscape", frames=[wide], onPage=self._page, pagesize=landscape(A4)
                ),
            ]
        )

    def afterFlowable(self, flowable: Flowable) -> None:
        self._on_flowable()

    def _cover_page(self, canvas: Any, doc: Any) -> None:
        pw, ph = A4
        canvas.saveState()
        canvas.setFillColor(ACCENT)
        canvas.rect(0, ph - 70 * mm, pw, 70 * mm, stroke=0, fill=1)
        canvas.setFillColor(colors.HexColor("#3b82f6"))
        canvas.rect(0, ph - 74 * mm, pw, 4 * mm, stroke=0, fill=1)
        canvas.setFillColor(colors.white)
        canvas.setFont(self.bold, 11)
        canvas.drawString(MARGIN + 10 * mm, ph - 30 * mm, "REPORT")
        canvas.setFont(self.sans, 9)
        canvas.setFillColor(MUTED)
        canvas.drawRightString(pw - MARGIN, MARGIN - 4, f"Page {canvas.getPageNumber()}")
        canvas.restoreState()

    def _page(self, canvas: Any, doc: Any) -> None:
        width, height = canvas._pagesize
        canvas.saveState()
        canvas.setStrokeColor(LINE)
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN, height - MARGIN + 2, width - MARGIN, height - MARGIN + 2)
        canvas.line(MARGIN, MARGIN - 2, width - MARGIN, MARGIN - 2)
        canvas.setFont(self.sans, 8)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, height - MARGIN + 6, self.report_title[:110])
        canvas.drawRightString(width - MARGIN, MARGIN - 11, f"Page {canvas.getPageNumber()}")
        canvas.restoreState()


class LazyStory(list[Flowable]):
    """A story that pulls flowables from an iterator as platypus consumes it.

    `BaseDocTemplate.build` checks `len(story)` before taking each flowable, so topping the
    buffer up there keeps only a few pages of detail rows alive instead of all of them.
    """

    def __init__(self, head: Iterable[Flowable], tail: Iterator[Flowable]) -> None:
        super().__init__(head)
        self._tail: Iterator[Flowable] | None = tail

    def __len__(self) -> int:
        if self._tail is not None and super().__len__() < 4:
            more = list(itertools.islice(self._tail, 4))
            if more:
                self.extend(more)
            else:
                self._tail = None
        return super().__len__()
