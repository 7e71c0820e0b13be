"""How numbers, dates and money read for a report's audience (`locale`, `currency`).

The symbols come from the CLDR data Babel ships (decimal and group separators, the currency
pattern, the date formats), looked up once per locale. Formatting itself is Python's own
`format()` with the separators swapped afterwards: a report formats hundreds of thousands of
numbers, and Babel's pattern engine costs ten times more per number for the same digits.

A builder sets the style for the report it builds (`using(style)`, a context variable, so
threads and workers building other reports are not affected); the formatters of the PDF, the
workbook and the analysis page read `current()`. Without one, the style is plain English.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import get_currency_symbol, list_currencies

from app.core.errors import InvalidInputError

DEFAULT_LOCALE = "en"
EXAMPLES = "en, de, fr, ja, en-GB, de-CH..."


class UnknownLocale(InvalidInputError):
    pass


@dataclass(frozen=True)
class NumberStyle:
    locale: str
    decimal: str
    group: str
    percent_space: str
    """What stands between a number and its % sign ("" in English, a narrow space in French)."""
    currency: str | None = None
    currency_symbol: str = ""
    symbol_first: bool = True
    symbol_space: str = ""
    iso_dates: bool = False
    """Dates as YYYY-MM-DD (a report that asked for no locale), not the locale's own."""

    def number(self, value: float, decimals: int = 2) -> str:
        return self._swap(f"{value:,.{decimals}f}")

    def integer(self, value: int) -> str:
        return self._swap(f"{value:,}")

    def short(self, value: float, digits: int = 4) -> str:
        """A key or a tick label: `digits` significant digits."""
        return self._swap(f"{value:,.{digits}g}")

    def percent(self, value: float, *, signed: bool = False, decimals: int = 1) -> str:
        text = self._swap(f"{value:{'+' if signed else ''}.{decimals}f}")
        return f"{text}{self.percent_space}%"

    def money(self, value: float, decimals: int = 2) -> str:
        """`value` in the report's currency; a plain number without one."""
        text = self.number(abs(value), decimals)
        if self.currency:
            if self.symbol_first:
                text = f"{self.currency_symbol}{self.symbol_space}{text}"
            else:
                text = f"{text}{self.symbol_space}{self.currency_symbol}"
        return f"-{text}" if value < 0 else text

    def date(self, value: date | datetime) -> str:
        if self.iso_dates:
            return value.isoformat()
        day = value.date() if isinstance(value, datetime) else value
        return _medium_date(self.locale, day)

    def _swap(self, text: str) -> str:
        if self.decimal == "." and self.group == ",":
            return text
        return text.translate({ord(","): self.group, ord("."): self.decimal})


@lru_cache(maxsize=64)
def style_for(locale: str = DEFAULT_LOCALE, currency: str | None = None) -> NumberStyle:
    """The style of `locale` (a CLDR tag: "de", "fr-CA", "ja"), with `currency` (ISO 4217)
    for money; UnknownLocale names what is wrong."""
    try:
        loc = Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        raise UnknownLocale(
            f"locale {locale!r} is not known; use a CLDR tag ({EXAMPLES})"
        ) from None
    if currency is not None and currency not in list_currencies():
        raise UnknownLocale(f"currency {currency!r} is not an ISO 4217 code (EUR, USD, JPY...)")
    symbols = loc.number_symbols["latn"]
    percent = loc.percent_formats[None].pattern
    pattern = loc.currency_formats["standard"].pattern.split(";")[0]
    first = pattern.index("¤") < pattern.index("0")
    between = pattern[pattern.index("¤") + 1] if first else pattern[pattern.index("¤") - 1]
    return NumberStyle(
        locale=str(loc),
        decimal=symbols["decimal"],
        group=symbols["group"],
        percent_space=percent[percent.rindex("0") + 1 : percent.index("%")],
        currency=currency,
        currency_symbol=get_currency_symbol(currency, locale=loc) if currency else "",
        symbol_first=first,
        symbol_space=between if between.isspace() else "",
    )


@lru_cache(maxsize=4096)
def _medium_date(locale: str, day: date) -> str:
    return str(format_date(day, "medium", locale=locale))


PLAIN = NumberStyle(locale=DEFAULT_LOCALE, decimal=".", group=",", percent_space="", iso_dates=True)
"""A report that asked for no locale: the formats it always had."""
_current: contextvars.ContextVar[NumberStyle] = contextvars.ContextVar(
    "report_style", default=PLAIN
)


def current() -> NumberStyle:
    return _current.get()


@contextmanager
def using(style: NumberStyle) -> Iterator[NumberStyle]:
    """Format with `style` inside the block (the report being built)."""
    token = _current.set(style)
    try:
        yield style
    finally:
        _current.reset(token)
