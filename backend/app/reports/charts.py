"""Vector charts (bar, line, pie) as ReportLab drawings.

A `Drawing` is a platypus flowable, so the PDF embeds it as vector paths: no matplotlib, no
PNG round trip (about ten times slower per chart), and crisp at any zoom. The same drawings
render to inline SVG for the analysis HTML page.

Labels are measured and drawn in `font` (bold: `bold_font`): Helvetica by default, which an
SVG names for the browser to substitute; the PDF passes its embedded Unicode fonts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from reportlab import rl_config
from reportlab.graphics.charts.barcharts import HorizontalBarChart, VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.charts.piecharts import Pie
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth

from app.reports.locale_style import current

# ReportLab validates every attribute assignment on chart objects by default, a development
# aid that costs about a fifth of chart rendering time; our charts are fixed code.
rl_config.shapeChecking = 0

PALETTE = [
    colors.HexColor(c)
    for c in (
        "#2563eb",
        "#f59e0b",
        "#10b981",
        "#ef4444",
        "#8b5cf6",
        "#06b6d4",
        "#ec4899",
        "#84cc16",
        "#64748b",
        "#f97316",
    )
]
TEXT = colors.HexColor("#1f2937")
GRID = colors.HexColor("#e5e7eb")
FONT = "Helvetica"
BOLD_FONT = "Helvetica-Bold"
BAR_LABEL_WIDTH = 118.0


def fmt_short(value: float) -> str:
    """Axis-friendly numbers: 950, 12.5K, 3.2M, 1.1B."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    sign = "-" if value < 0 else ""
    v = abs(float(value))
    style = current()  # the report's decimal and group separators
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if v >= limit:
            text = f"{v / limit:.1f}".rstrip("0").rstrip(".")
            return f"{sign}{text.replace('.', style.decimal)}{suffix}"
    if v >= 100 or v == int(v):
        return f"{sign}{style.number(v, 0)}"
    return f"{sign}{v:.2f}".rstrip("0").rstrip(".").replace(".", style.decimal)


def _clip(label: str, n: int) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _fit(label: str, width: float, font: str, size: float) -> str:
    """`label` shortened (ellipsis) to `width` points: wide characters (CJK) fill a column
    long before 22 of them do."""
    if stringWidth(label, font, size) <= width:
        return label
    while label and stringWidth(label + "…", font, size) > width:
        label = label[:-1]
    return label + "…"


def _title(drawing: Drawing, text: str, width: float, height: float, font: str) -> None:
    if text:
        drawing.add(String(0, height - 12, text, fontName=font, fontSize=10, fillColor=TEXT))


def _nice_range(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low = min([0.0, *finite])
    high = max([0.0, *finite])
    if high == low:
        high = low + 1
    return low, high


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str = "",
    width: float = 460,
    height: float = 220,
    horizontal: bool = True,
    color_index: int = 0,
    font: str = FONT,
    bold_font: str = BOLD_FONT,
) -> Drawing:
    """One series of bars; horizontal by default because group names are long."""
    drawing = Drawing(width, height, initialFontName=font)
    _title(drawing, title, width, height, bold_font)
    vals = [float(v) if v is not None and math.isfinite(float(v)) else 0.0 for v in values]
    names = [_fit(_clip(str(label), 22), BAR_LABEL_WIDTH, font, 7) for label in labels]
    chart: HorizontalBarChart | VerticalBarChart
    if horizontal:
        chart = HorizontalBarChart()
        widest = max((stringWidth(n, font, 7) for n in names), default=20.0)
        label_room = min(130, 12 + max(widest, 5.2 * max((len(n) for n in names), default=4)))
        chart.x, chart.y = label_room, 18
        chart.width, chart.height = width - label_room - 14, height - 40
        # Largest first, top to bottom.
        names, vals = names[::-1], vals[::-1]
        chart.categoryAxis.labels.boxAnchor = "e"
        chart.categoryAxis.labels.dx = -4
        chart.valueAxis.labels.angle = 0
    else:
        chart = VerticalBarChart()
        chart.x, chart.y = 42, 40
        chart.width, chart.height = width - 56, height - 62
        chart.categoryAxis.labels.boxAnchor = "ne"
        chart.categoryAxis.labels.angle = 30
        chart.categoryAxis.labels.dy = -2
    chart.data = [vals or [0.0]]
    chart.categoryAxis.categoryNames = names or [""]
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.labels.fontName = font
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = fmt_short
    low, high = _nice_range(vals)
    chart.valueAxis.valueMin, chart.valueAxis.valueMax = low, high * 1.05
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = GRID
    chart.valueAxis.gridStrokeWidth = 0.5
    chart.bars[0].fillColor = PALETTE[color_index % len(PALETTE)]
    chart.bars[0].strokeColor = None
    chart.barSpacing = 1
    chart.groupSpacing = 4 if len(vals) < 30 else 1
    drawing.add(chart)
    return drawing


def line_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str = "",
    width: float = 460,
    height: float = 200,
    max_labels: int = 12,
    font: str = FONT,
    bold_font: str = BOLD_FONT,
) -> Drawing:
    """Lines over ordered periods. A numeric x axis carrying at most `max_labels` labels:
    a category axis would build (and measure) one label object per point even when blank."""
    drawing = Drawing(width, height, initialFontName=font)
    _title(drawing, title, width, height, bold_font)
    chart = LinePlot()
    legend_room = 16 if len(series) > 1 else 0
    chart.x, chart.y = 44, 24 + legend_room
    chart.width, chart.height = width - 58, height - 46 - legend_room
    data = [
        [
            (i, float(v) if v is not None and math.isfinite(float(v)) else 0.0)
            for i, v in enumerate(values)
        ]
        for values in series.values()
    ]
    data = [points for points in data if points] or [[(0, 0.0)]]
    chart.data = data
    n = max(len(labels), 1)
    step = max(1, math.ceil(n / max_labels))
    names = [str(label) for label in labels]
    x = chart.xValueAxis
    x.valueMin, x.valueMax = 0, max(n - 1, 1)
    x.valueSteps = list(range(0, n, step))
    x.labelTextFormat = lambda v: names[round(v)] if 0 <= round(v) < len(names) else ""
    x.labels.fontName, x.labels.fontSize = font, 7
    x.tickDown = 2
    y = chart.yValueAxis
    low, high = _nice_range([v for points in data for _, v in points])
    y.valueMin, y.valueMax = low, high * 1.05
    y.labelTextFormat = fmt_short
    y.labels.fontName, y.labels.fontSize = font, 7
    y.visibleGrid = True
    y.gridStrokeColor = GRID
    y.gridStrokeWidth = 0.5
    for i in range(len(data)):
        chart.lines[i].strokeColor = PALETTE[i % len(PALETTE)]
        chart.lines[i].strokeWidth = 1.6
    drawing.add(chart)
    if len(series) > 1:
        legend = Legend()
        legend.x, legend.y = chart.x, 8
        legend.alignment = "right"
        legend.columnMaximum = 1
        legend.deltax = 90
        legend.fontName, legend.fontSize = font, 7
        legend.dx = legend.dy = 6
        legend.colorNamePairs = [(PALETTE[i % len(PALETTE)], name) for i, name in enumerate(series)]
        drawing.add(legend)
    return drawing


def pie_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str = "",
    width: float = 460,
    height: float = 200,
    max_slices: int = 8,
    font: str = FONT,
    bold_font: str = BOLD_FONT,
) -> Drawing:
    """Shares of a total; slices past `max_slices - 1` merge into "Other"."""
    drawing = Drawing(width, height, initialFontName=font)
    _title(drawing, title, width, height, bold_font)
    pairs = [
        (str(label), max(0.0, float(v or 0.0))) for label, v in zip(labels, values, strict=False)
    ]
    pairs.sort(key=lambda p: p[1], reverse=True)
    if len(pairs) > max_slices:
        head, tail = pairs[: max_slices - 1], pairs[max_slices - 1 :]
        pairs = [*head, ("Other", sum(v for _, v in tail))]
    total = sum(v for _, v in pairs) or 1.0
    pie = Pie()
    size = min(height - 40, width / 2 - 20)
    pie.x, pie.y = 20, (height - 16 - size) / 2
    pie.width = pie.height = size
    pie.data = [v for _, v in pairs] or [1.0]
    pie.labels = None
    pie.sideLabels = False
    pie.slices.strokeColor = colors.white
    pie.slices.strokeWidth = 0.8
    for i in range(len(pie.data)):
        pie.slices[i].fillColor = PALETTE[i % len(PALETTE)]
    drawing.add(pie)
    legend = Legend()
    legend.x, legend.y = pie.x + size + 30, pie.y + size - 4
    legend.alignment = "right"
    legend.columnMaximum = max_slices
    legend.fontName, legend.fontSize = font, 8
    legend.dx = legend.dy = 7
    legend.deltay = 12
    legend.colorNamePairs = [
        (PALETTE[i % len(PALETTE)], f"{_clip(name, 24)}  {current().percent(100 * v / total)}")
        for i, (name, v) in enumerate(pairs)
    ]
    drawing.add(legend)
    return drawing


def to_svg(drawing: Drawing) -> str:
    """Inline SVG markup of a drawing (for HTML pages)."""
    from reportlab.graphics import renderSVG

    svg: str = renderSVG.drawToString(drawing)
    # Drop the XML prolog and DOCTYPE so the markup can sit inside HTML.
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
