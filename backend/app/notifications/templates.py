"""Mail templates: a subject, a text part and an optional HTML part, rendered with Jinja2.

Bodies posted through the API are templates too (`Hello {{ name }}`), so everything renders
in the budgeted sandbox of `sandbox.py`: a caller's template cannot reach Python internals,
is never evaluated while compiling (so the API's compile check is linear in its length), and
renders, in the worker, under the TEMPLATE_* limits of the settings with the job's
cancellation check. A template sent through the API may not `{% include %}`, `{% import %}`
or `{% extends %}` anything. Every rendering failure is a `TemplateProblem` whose message
names no server path. HTML parts are
autoescaped, text parts are not. Undefined variables are errors, not blanks, so a bulk send
never mails "Dear ," to anyone: that recipient fails with a message instead.

Built-in templates live in `templates/` as NAME.subject.txt, NAME.txt and NAME.html
(the last optional).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    meta,
    nodes,
)

from app.core.config import Settings, get_settings
from app.notifications.sandbox import Budget, BudgetedEnvironment, Limits, render_capped

TEMPLATE_DIR = Path(__file__).parent / "templates"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


class TemplateProblem(ValueError):
    """A template that does not exist, does not compile, or does not render."""


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class MailTemplate:
    """Compiled parts, ready to render once per recipient."""

    subject: Template
    text: Template
    html: Template | None = None
    variables: frozenset[str] = frozenset()
    """What the parts read from the context (not counting `x is defined` or
    `x | default(...)`, which a template may leave out): checked at submit (`missing`)."""

    def missing(self, context: dict[str, Any]) -> list[str]:
        """The variables this context lacks, sorted; rendering with it would fail."""
        return sorted(name for name in self.variables if name not in context)

    def render(
        self,
        context: dict[str, Any],
        *,
        check: Callable[[], None] | None = None,
        limits: Limits | None = None,
    ) -> RenderedMail:
        """Render every part under one budget; `check` (cancellation) runs every so often."""
        budget = Budget(limits or limits_of(get_settings()), check=check)
        try:
            subject = render_capped(self.subject, context, budget)
            text = render_capped(self.text, context, budget)
            html = render_capped(self.html, context, budget) if self.html is not None else None
        except RecursionError:
            raise TemplateProblem(
                "the template cannot be rendered: it nests or recurses too deeply"
            ) from None
        except MemoryError:
            raise TemplateProblem("the template cannot be rendered: out of memory") from None
        except TemplateError as exc:
            raise TemplateProblem(
                f"the template cannot be rendered: {exc.message or type(exc).__name__}"
            ) from None
        except _RUNTIME_ERRORS as exc:
            raise TemplateProblem(
                f"the template cannot be rendered: {type(exc).__name__}: {exc}"
            ) from None
        # A header is one line: newlines in a subject would be a header injection.
        return RenderedMail(subject=" ".join(subject.split()), text=text, html=html)


_RUNTIME_ERRORS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError)
"""What a template's own mistakes raise (`{{ 1/0 }}`); anything else (cancellation, a soft
time limit) goes through to the runner."""
_REFUSED: dict[type[nodes.Node], str] = {
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}",
}


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_output_bytes=settings.TEMPLATE_MAX_OUTPUT_BYTES,
        max_loop=settings.TEMPLATE_MAX_LOOP,
        max_operations=settings.TEMPLATE_MAX_OPERATIONS,
    )


def _user_template(env: BudgetedEnvironment, source: str) -> tuple[Template, frozenset[str]]:
    """A template sent by a caller: parsed, refused if it reaches for other files, compiled;
    with the variables it needs.

    Never evaluated (see `sandbox.py`), so this costs time linear in `source`, whose tokens
    the environment caps (`MAX_TOKENS`): under a second at worst.
    """
    tree = env.parse(source)
    for node in tree.find_all(tuple(_REFUSED)):
        tag = _REFUSED[type(node)]
        raise TemplateProblem(
            f"the template does not compile: {tag} is not allowed in a template sent "
            "through the API (use the built-in 'template' instead)"
        )
    needed = _needed(env, tree)
    return env.from_string(tree), needed


_OPTIONAL_TESTS = frozenset({"defined", "undefined"})
_OPTIONAL_FILTERS = frozenset({"default", "d"})


def _needed(env: BudgetedEnvironment, tree: nodes.Template) -> frozenset[str]:
    """The context variables a parsed template reads (Jinja's `find_undeclared_variables`),
    less the environment's globals, names the template guards itself (`x is defined`,
    `x | default(...)`: a StrictUndefined fails only on an unguarded read) and names it
    defines anywhere (a macro calling itself reads its own name before Jinja counts it as
    declared): only a certain failure is refused at submit."""
    defined = {macro.name for macro in tree.find_all(nodes.Macro)} | {
        name.name for name in tree.find_all(nodes.Name) if name.ctx in ("store", "param")
    }
    guarded = {
        node.node.name
        for node in tree.find_all((nodes.Test, nodes.Filter))
        if isinstance(node.node, nodes.Name)
        and node.name in (_OPTIONAL_TESTS if isinstance(node, nodes.Test) else _OPTIONAL_FILTERS)
    }
    undeclared = meta.find_undeclared_variables(tree)
    return frozenset(undeclared - guarded - defined - set(env.globals))


@lru_cache(maxsize=32)
def _builtin_needs(name: str) -> frozenset[str]:
    text_env, _ = _environments()
    needed: set[str] = set()
    for part in (f"{name}.subject.txt", f"{name}.txt", f"{name}.html"):
        try:
            source, _, _ = FileSystemLoader(TEMPLATE_DIR).get_source(text_env, part)
        except TemplateNotFound:
            continue
        needed |= _needed(text_env, text_env.parse(source))
    return frozenset(needed)


@lru_cache(maxsize=1)
def _environments() -> tuple[BudgetedEnvironment, BudgetedEnvironment]:
    loader = FileSystemLoader(TEMPLATE_DIR)
    common: dict[str, Any] = {
        "loader": loader,
        "undefined": StrictUndefined,
        "keep_trailing_newline": True,
    }
    return (
        BudgetedEnvironment(autoescape=False, **common),
        BudgetedEnvironment(autoescape=True, **common),
    )


def available_templates() -> list[str]:
    return sorted(
        path.name.removesuffix(".txt")
        for path in TEMPLATE_DIR.glob("*.txt")
        if not path.name.endswith(".subject.txt")
    )


def load_template(name: str) -> MailTemplate:
    """A built-in template by name; `TemplateProblem` lists the valid names otherwise."""
    text_env, html_env = _environments()
    if not _NAME.match(name) or not (TEMPLATE_DIR / f"{name}.txt").is_file():
        raise TemplateProblem(
            f"unknown template {name!r}; available: {', '.join(available_templates())}"
        )
    try:
        html: Template | None = html_env.get_template(f"{name}.html")
    except TemplateNotFound:
        html = None
    try:
        subject = text_env.get_template(f"{name}.subject.txt")
    except TemplateNotFound:
        subject = text_env.from_string("")
    return MailTemplate(
        subject=subject,
        text=text_env.get_template(f"{name}.txt"),
        html=html,
        variables=_builtin_needs(name),
    )


def compile_template(
    *,
    subject: str | None = None,
    template: str | None = None,
    body: str | None = None,
    html_body: str | None = None,
) -> MailTemplate:
    """The template of a request: a built-in `template` or an inline `body` (+ `html_body`).

    A given `subject` overrides the template's own. Raises `TemplateProblem` with the
    compiler's message, so the API can answer 422 before any job exists.
    """
    if (template is None) == (body is None):
        raise TemplateProblem("give exactly one of 'template' (a built-in name) or 'body'")
    text_env, html_env = _environments()
    try:
        if template is not None:
            base = load_template(template)
        else:
            assert body is not None
            text, needed = _user_template(text_env, body)
            html: Template | None = None
            if html_body:
                html, html_needs = _user_template(html_env, html_body)
                needed |= html_needs
            base = MailTemplate(
                subject=text_env.from_string(""), text=text, html=html, variables=needed
            )
        if subject is not None:
            own, subject_needs = _user_template(text_env, subject)
            base = MailTemplate(
                subject=own,
                text=base.text,
                html=base.html,
                variables=base.variables | subject_needs,
            )
    except TemplateProblem:
        raise
    except TemplateError as exc:
        raise TemplateProblem(f"the template does not compile: {exc}") from None
    except (RecursionError, SyntaxError, MemoryError):
        raise TemplateProblem("the template does not compile: it nests too deeply") from None
    except ValueError as exc:  # a number literal past Python's 4,300 digits
        raise TemplateProblem(f"the template does not compile: {exc}") from None
    return base
