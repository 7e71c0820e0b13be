"""The analysis report as one self-contained HTML page, with inline SVG charts.

The page is `templates/analysis.html` (Jinja2, autoescaped); this module draws the charts
and supplies the number formats the template calls, so the template only lays things out.
"""

from __future__ import annotations

import html
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template

from app.reports import charts
from app.reports.locale_style import current

TEMPLATE_DIR = Path(__file__).parent / "templates"
DASH = "\u2013"


@lru_cache(maxsize=1)
def _template() -> Template:
    return Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=True).get_template(
        "analysis.html"
    )


def _num(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, int | float) and not isinstance(value, bool):
        v = float(value)
        if not math.isfinite(v):
            return DASH
        return current().number(v, 0 if abs(v) >= 1000 or v == int(v) else 2)
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    if value is None:
        return DASH
    cls = "pos" if value > 0 else "neg" if value < 0 else ""
    return f'<span class="{cls}">{html.escape(current().percent(value, signed=True))}</span>'


def _heat(value: float | None) -> str:
    if value is None:
        return "transparent"
    v = max(-1.0, min(1.0, value))
    # Blue for positive, red for negative; stronger correlation, stronger colour.
    alpha = abs(v) * 0.55
    return f"rgba(37, 99, 235, {alpha:.2f})" if v >= 0 else f"rgba(239, 68, 68, {alpha:.2f})"


def _trend_svg(result: dict[str, Any]) -> str:
    trend = result.get("trend")
    if not trend or not trend["points"]:
        return ""
    series_name = result["measures"][0] if result["measures"] else None
    labels = [pt["period"] for pt in trend["points"]]
    values = [pt["sums"][series_name] if series_name else pt["rows"] for pt in trend["points"]]
    return charts.to_svg(
        charts.line_chart(
            labels,
            {series_name or "rows": values},
            title=f"{series_name or 'rows'} by {trend['period']}",
            width=720,
            height=240,
        )
    )


def _group_svgs(result: dict[str, Any]) -> dict[str, str]:
    svgs = {}
    for column, g in result["groups"].items():
        top = g["top"][:15]
        labels = [str(row["value"]) if row["value"] is not None else "(blank)" for row in top]
        m0 = result["measures"][0] if result["measures"] else None
        values = [row["sums"][m0] if m0 else row["rows"] for row in top]
        svgs[column] = charts.to_svg(
            charts.bar_chart(
                labels,
                values,
                title=f"{m0 or 'rows'} by {column}",
                width=720,
                height=max(140, 40 + 16 * len(top)),
            )
        )
    return svgs


def render_html(result: dict[str, Any], path: Path, *, generated: str, filters: str) -> None:
    """Write the analysis as a self-contained HTML page with inline SVG charts."""
    page = _template().render(
        r=result,
        generated=generated,
        filters=filters,
        trend_svg=_trend_svg(result),
        group_svgs=_group_svgs(result),
        num=_num,
        pct=_pct,
        pct_plain=lambda v: DASH if v is None else f"{v:.1f}%",
        heat=_heat,
        corr=lambda v: DASH if v is None else f"{v:.3f}",
    )
    path.write_text(page, encoding="utf-8")
