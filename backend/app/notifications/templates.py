"""Mail templates: a subject, a text part and an optional HTML part, rendered with Jinja2.

Bodies posted through the API are templates too (`Hello {{ name }}`), so everything renders
in Jinja's sandbox: a caller's template cannot reach Python internals. HTML parts are
autoescaped, text parts are not. Undefined variables are errors, not blanks, so a bulk send
never mails "Dear ," to anyone: that recipient fails with a message instead.

Built-in templates live in `templates/` as NAME.subject.txt, NAME.txt and NAME.html
(the last optional).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

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

    def render(self, context: dict[str, Any]) -> RenderedMail:
        try:
            subject = self.subject.render(context)
            text = self.text.render(context)
            html = self.html.render(context) if self.html is not None else None
        except TemplateError as exc:
            raise TemplateProblem(f"the template cannot be rendered: {exc}") from None
        # A header is one line: newlines in a subject would be a header injection.
        return RenderedMail(subject=" ".join(subject.split()), text=text, html=html)


@lru_cache(maxsize=1)
def _environments() -> tuple[SandboxedEnvironment, SandboxedEnvironment]:
    loader = FileSystemLoader(TEMPLATE_DIR)
    common: dict[str, Any] = {
        "loader": loader,
        "undefined": StrictUndefined,
        "keep_trailing_newline": True,
    }
    return (
        SandboxedEnvironment(autoescape=False, **common),
        SandboxedEnvironment(autoescape=True, **common),
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
    return MailTemplate(subject=subject, text=text_env.get_template(f"{name}.txt"), html=html)


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
            base = MailTemplate(
                subject=text_env.from_string(""),
                text=text_env.from_string(body),
                html=html_env.from_string(html_body) if html_body else None,
            )
        if subject is not None:
            base = MailTemplate(
                subject=text_env.from_string(subject), text=base.text, html=base.html
            )
    except TemplateProblem:
        raise
    except TemplateError as exc:
        raise TemplateProblem(f"the template does not compile: {exc}") from None
    return base
