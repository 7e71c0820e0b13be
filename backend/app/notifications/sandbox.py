"""The Jinja environment user templates run in: sandboxed, never evaluated while compiling,
and rendered under a budget.

A template posted through the API is code written by a stranger, so:
- compiling never evaluates it: constant folding is off (`optimized=False`), arithmetic is
  intercepted (an intercepted operator is never folded) and every filter asks for the
  render's context (a context filter is never folded). `{{ 9**(9**7) }}` compiles in
  microseconds, whatever it would cost to run;
- rendering runs under a `Budget` (one per render, in a context variable): every call,
  operator, filter, loop step and output piece counts as an operation; a number too big, a
  string or list past the size cap, a `range` past the loop cap, too many operations or too
  much output end the render with `BudgetExceeded`, a readable message. Every so many
  operations the budget calls `check` (the job's cancellation check), so a cancelled job
  stops mid-render;
- `{% for %}` iterates through `budget_iter` and `~` through `budget_concat` (an AST
  rewrite and a code-generator override), so nested loops and doubling strings are counted.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.lexer import Token, TokenStream
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context

MAX_INT_BITS = 4096
"""The largest integer arithmetic may produce (about 1,200 digits)."""
CHECK_EVERY = 1000
"""Operations between two calls of the budget's `check` (cancellation)."""
MAX_TOKENS = 10_000
"""Tokens a template may have. Compiling is linear but not cheap (tens of microseconds a
token), so this bounds a compile to under a second; a long HTML mail with a few hundred
variables has a few thousand tokens (text between tags is one token)."""
"""Operations between two calls of the budget's `check` (cancellation)."""
_SIZED = (str, list, tuple)


class BudgetExceeded(SecurityError):
    """The template wanted more than a render may spend; the message says which limit."""


@dataclass(frozen=True)
class Limits:
    max_output_bytes: int = 1_000_000
    """The rendered text of one part, and the size of any string or list made on the way."""
    max_loop: int = 10_000
    """The longest `range()`, `batch` or `slice` a template may ask for."""
    max_operations: int = 1_000_000
    """Calls, operators, filters, loop steps and output pieces of one render."""


@dataclass
class Budget:
    limits: Limits = field(default_factory=Limits)
    check: Callable[[], None] | None = None
    operations: int = 0
    produced: int = 0
    _next_check: int = CHECK_EVERY

    def tick(self, n: int = 1) -> None:
        self.operations += n
        if self.operations > self.limits.max_operations:
            raise BudgetExceeded(
                f"the template does too much work (over {self.limits.max_operations:,} "
                "operations: loops, calls or output pieces)"
            )
        if self.check is not None and self.operations >= self._next_check:
            self._next_check = self.operations + CHECK_EVERY
            self.check()

    def size(self, length: int, what: str) -> None:
        if length > self.limits.max_output_bytes:
            raise BudgetExceeded(
                f"{what} would be {length:,} characters, over the limit of "
                f"{self.limits.max_output_bytes:,}"
            )

    def output(self, value: Any) -> Any:
        """One piece of output, top level or buffered (a macro, a `{% set %}` block)."""
        self.tick()
        self.produced += len(value) if isinstance(value, str) else 0
        # Buffered pieces are joined again by their caller: allow some re-use, not 1 GB.
        if self.produced > 4 * self.limits.max_output_bytes:
            raise BudgetExceeded(
                f"the template produces too much output (over "
                f"{4 * self.limits.max_output_bytes:,} characters)"
            )
        return value


_budget: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def current_budget() -> Budget:
    budget = _budget.get()
    if budget is None:
        raise BudgetExceeded("a template runs only through the budgeted renderer")
    return budget


def render_capped(template: Any, context: dict[str, Any], budget: Budget) -> str:
    """Render `template` under `budget`, stopping as soon as the output passes the cap."""
    token = _budget.set(budget)
    try:
        pieces: list[str] = []
        total = 0
        for piece in template.generate(context):
            budget.tick()
            total += len(piece.encode("utf-8", "surrogatepass"))
            if total > budget.limits.max_output_bytes:
                raise BudgetExceeded(
                    f"the rendered text passes the output limit of "
                    f"{budget.limits.max_output_bytes:,} bytes"
                )
            pieces.append(piece)
        return "".join(pieces)
    finally:
        _budget.reset(token)


# --------------------------------------------------------------------------- checks
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise BudgetExceeded(f"a number in the template would exceed {MAX_INT_BITS} bits")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(fmt: str, budget: Budget) -> None:
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*":
                raise BudgetExceeded("'*' widths are not allowed in a template's format strings")
            if number and int(number) > budget.limits.max_output_bytes:
                budget.size(int(number), "a formatted value")


def _check_brace_format(fmt: str, budget: Budget) -> None:
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format itself will say what is wrong
    for _literal, _name, spec, _conversion in parsed:
        for number in re.findall(r"\d+", spec or ""):
            budget.size(int(number), "a formatted value")
        if spec and "{" in spec:
            _check_brace_format(spec, budget)


def _check_binop(operator: str, left: Any, right: Any, budget: Budget) -> None:
    if operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        _check_int_bits(min(right, MAX_INT_BITS + 1) * left.bit_length())
    elif operator == "*":
        if _is_int(left) and _is_int(right):
            _check_int_bits(left.bit_length() + right.bit_length())
        elif isinstance(left, _SIZED) and _is_int(right):
            budget.size(len(left) * right, "a repeated string or list")
        elif isinstance(right, _SIZED) and _is_int(left):
            budget.size(len(right) * left, "a repeated string or list")
    elif operator == "+":
        if _is_int(left) and _is_int(right):
            _check_int_bits(max(left.bit_length(), right.bit_length()) + 1)
        elif isinstance(left, _SIZED) and isinstance(right, _SIZED):
            budget.size(len(left) + len(right), "a joined string or list")
    elif operator == "%" and isinstance(left, str):
        _check_percent_format(left, budget)


def _projected_replace(text: str, old: Any, new: Any, budget: Budget) -> None:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        count = len(text) + 1 if old == "" else text.count(old)
        budget.size(len(text) + count * (len(new) - len(old)), "the replaced text")


def _projected_join(separator: Any, items: Any, budget: Budget) -> list[Any]:
    values = list(items)
    budget.tick(len(values))
    length = len(str(separator)) * max(len(values) - 1, 0)
    length += sum(len(v) if isinstance(v, str) else len(str(v)) for v in values)
    budget.size(length, "the joined text")
    return values


def _check_str_method(
    text: str, name: str, args: tuple[Any, ...], budget: Budget
) -> tuple[Any, ...]:
    """Refuse a str method call that would allocate past the cap; the args to call with."""
    if name in ("center", "ljust", "rjust", "zfill") and args and _is_int(args[0]):
        budget.size(args[0], f"str.{name}()")
    elif name == "expandtabs" and args and _is_int(args[0]):
        budget.size(len(text) + text.count("\t") * args[0], "str.expandtabs()")
    elif name == "replace" and len(args) >= 2:
        _projected_replace(text, args[0], args[1], budget)
    elif name == "join" and args:
        return (_projected_join(text, args[0], budget), *args[1:])
    elif name in ("format", "format_map"):
        _check_brace_format(text, budget)
    return args


def _check_result(result: Any, budget: Budget) -> Any:
    if isinstance(result, _SIZED):
        budget.size(len(result), "a value made by the template")
    return result


def _check_filter(name: str, args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    """Size checks of the filters that can amplify: `args[0]` is the filtered value."""
    value, rest = (args[0] if args else None), args[1:]

    def arg(position: int, key: str) -> Any:
        return rest[position] if len(rest) > position else kwargs.get(key)

    if name == "center" and _is_int(arg(0, "width")):
        budget.size(arg(0, "width"), "the centred text")
    elif name in ("batch", "slice"):
        count = arg(0, "linecount" if name == "batch" else "slices")
        if _is_int(count) and count > budget.limits.max_loop:
            raise BudgetExceeded(f"{name}() over the limit of {budget.limits.max_loop:,}")
    elif name == "indent" and isinstance(value, str):
        width = arg(0, "width")
        pad = len(width) if isinstance(width, str) else width if _is_int(width) else 4
        budget.size(len(value) + (value.count("\n") + 1) * pad, "the indented text")
    elif name == "replace" and isinstance(value, str):
        _projected_replace(value, arg(0, "old"), arg(1, "new"), budget)
    elif name == "wordwrap" and isinstance(value, str):
        width, wrap = arg(0, "width"), arg(2, "wrapstring")
        lines = len(value) // max(width if _is_int(width) else 79, 1) + value.count("\n") + 1
        budget.size(len(value) + lines * len(wrap if isinstance(wrap, str) else "\n"), "wrap")
    elif name == "format" and isinstance(value, str):
        _check_percent_format(value, budget)
    elif name == "tojson":
        indent = arg(0, "indent")
        if (_is_int(indent) and indent > 16) or (isinstance(indent, str) and len(indent) > 16):
            raise BudgetExceeded("tojson() indents by at most 16")


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` checked and counted; a context filter, so the compiler never folds it."""
    pass_arg = getattr(func, "jinja_pass_arg", None)
    first = getattr(pass_arg, "name", None)

    @pass_context
    @wraps(func)
    def guarded(context: Context, *args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        _check_filter(name, list(args), kwargs, budget)
        if name == "join" and args:
            args = (_projected_join(kwargs.get("d", args[1] if len(args) > 1 else ""),
                                    args[0], budget), *args[1:])  # fmt: skip
        if first == "context":
            result = func(context, *args, **kwargs)
        elif first == "eval_context":
            result = func(context.eval_ctx, *args, **kwargs)
        elif first == "environment":
            result = func(context.environment, *args, **kwargs)
        else:
            result = func(*args, **kwargs)
        return _check_result(result, budget)

    guarded.__dict__.pop("__wrapped__", None)
    return guarded


# --------------------------------------------------------------------------- environment
class _BudgetCodeGenerator(CodeGenerator):
    """Routes `~` and every output piece through the budget."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.budget_concat({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        raise nodes.Impossible()  # nothing is evaluated, nor left uncounted, at compile time

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write("environment.budget_output(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        self.write(")")


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """An immutable sandbox that never folds constants and renders under a `Budget`."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = _BudgetCodeGenerator

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(optimized=False, **kwargs)
        self.globals.pop("lipsum", None)  # lipsum(n=10**6): output without a loop
        self.globals["range"] = self.budget_range
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    def _tokenize(
        self,
        source: str,
        name: str | None,
        filename: str | None = None,
        state: str | None = None,
    ) -> TokenStream:
        stream = super()._tokenize(source, name, filename, state)

        def counted() -> Iterator[Token]:
            for count, token in enumerate(stream, start=1):
                if count > MAX_TOKENS:
                    raise TemplateSyntaxError(
                        f"the template is too long: over {MAX_TOKENS:,} tags, names and "
                        "operators (plain text between tags does not count)",
                        token.lineno,
                        name,
                        filename,
                    )
                yield token

        return TokenStream(counted(), name, filename)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("budget_iter"), [loop.iter], [], None, None
            )
            loop.iter.set_lineno(loop.lineno)
            loop.iter.set_environment(self)
        return tree

    # What compiled templates call (as `environment.<name>`).
    def budget_range(self, *args: int) -> range:
        rng = range(*args)
        limit = current_budget().limits.max_loop
        if len(rng) > limit:
            raise BudgetExceeded(f"range() of {len(rng):,} items, over the limit of {limit:,}")
        return rng

    def budget_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = current_budget()
        for item in iterable:
            budget.tick()
            yield item

    def budget_concat(self, join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        budget = current_budget()
        budget.tick()
        texts = [part if isinstance(part, str) else str(part) for part in parts]
        budget.size(sum(len(text) for text in texts), "a joined string")
        return join(parts)

    def budget_output(self, value: Any) -> Any:
        return current_budget().output(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = current_budget()
        budget.tick()
        _check_binop(operator, left, right, budget)
        return _check_result(self.binop_table[operator](left, right), budget)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        target = getattr(obj, "__wrapped__", obj)  # str.format comes wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(owner, getattr(target, "__name__", ""), args, budget)
        return _check_result(super().call(context, obj, *args, **kwargs), budget)
