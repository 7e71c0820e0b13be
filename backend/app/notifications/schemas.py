"""Request bodies of the notifications API, validated before any job exists."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from app.core.errors import InvalidInputError
from app.core.schemas import StrictModel
from app.notifications.email import normalise_address
from app.notifications.templates import (
    MailTemplate,
    TemplateProblem,
    available_templates,
    compile_template,
)
from app.webhooks.fields import WEBHOOK_URL_FIELD

MAX_BULK_RECIPIENTS = 10_000
MAX_EMAIL_RECIPIENTS = 50

TemplateName = Annotated[
    str, Field(max_length=64), WithJsonSchema({"type": "string", "enum": available_templates()})
]
"""Any string is checked (the refusal lists the names); the document lists the built-ins."""

Address = Annotated[str, Field(max_length=320, json_schema_extra={"format": "email"})]
_RECIPIENT_COUNT = {"minItems": 1, "maxItems": MAX_EMAIL_RECIPIENTS}
"""Checked by `EmailRequest._addresses`, whose refusal says what to do."""

_ONE_TEMPLATE: JsonDict = {
    "oneOf": [
        {
            "title": "a built-in template",
            "required": ["template"],
            "properties": {
                "template": {"type": "string"},
                "body": {"type": "null"},
                "html_body": {"type": "null"},
            },
        },
        {
            "title": "an inline body, with its subject",
            "required": ["body", "subject"],
            "properties": {
                "body": {"type": "string"},
                "subject": {"type": "string", "minLength": 1},
                "template": {"type": "null"},
            },
        },
    ]
}
"""What `_template_given` checks, said in the OpenAPI document."""


class _MailBody(StrictModel):
    model_config = ConfigDict(json_schema_extra=_ONE_TEMPLATE)

    subject: str | None = Field(default=None, max_length=500)
    template: TemplateName | None = Field(
        default=None, description="A built-in template, e.g. 'report_ready'."
    )
    body: str | None = Field(
        default=None,
        max_length=200_000,
        description="Text part; a Jinja2 template rendered with context.",
    )
    html_body: str | None = Field(
        default=None, max_length=500_000, description="Optional HTML part (autoescaped Jinja2)."
    )
    context: dict[str, Any] = Field(default_factory=dict)
    webhook_url: str | None = WEBHOOK_URL_FIELD

    @model_validator(mode="after")
    def _template_given(self) -> _MailBody:
        if (self.template is None) == (self.body is None):
            raise ValueError("give exactly one of 'template' (a built-in name) or 'body'")
        if self.body is not None and not self.subject:
            raise ValueError("a 'subject' is required with 'body'")
        if self.html_body is not None and self.body is None:
            raise ValueError("'html_body' goes with 'body' (a template has its own HTML)")
        return self

    def check_template(self) -> MailTemplate:
        """Compile the template and return it, or raise `InvalidInputError` (422) with the
        compiler's word.

        Not a validator: validation runs on the event loop, and compiling 700 kB of template
        takes a while. Routes call this from their worker thread (sync routes run in the
        thread pool). Compiling never evaluates the template (`sandbox.py`), so its cost is
        linear in the body's length, which the field limits bound; rendering is the worker's.
        """
        try:
            return compile_template(
                subject=self.subject,
                template=self.template,
                body=self.body,
                html_body=self.html_body,
            )
        except TemplateProblem as exc:
            raise InvalidInputError(str(exc)) from None


class EmailRequest(_MailBody):
    to: Address | Annotated[list[Address], Field(json_schema_extra=_RECIPIENT_COUNT)] = Field(
        description=f"One address or up to {MAX_EMAIL_RECIPIENTS}."
    )
    attach_job_id: str | None = Field(
        default=None,
        max_length=36,
        description="A completed job of yours whose file is attached.",
    )

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> list[str]:
        addresses = [value] if isinstance(value, str) else value
        if not 1 <= len(addresses) <= MAX_EMAIL_RECIPIENTS:
            raise ValueError(f"give 1 to {MAX_EMAIL_RECIPIENTS} addresses")
        return [normalise_address(address) for address in addresses]


class BulkRecipient(StrictModel):
    email: str = Field(max_length=320)
    context: dict[str, Any] = Field(default_factory=dict)


class BulkEmailRequest(_MailBody):
    recipients: list[BulkRecipient] = Field(min_length=1, max_length=MAX_BULK_RECIPIENTS)

    _invalid: list[dict[str, str]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _addresses(self) -> BulkEmailRequest:
        """Malformed addresses are set aside with their reason (`invalid_recipients`), not
        a refusal of the whole list: the route skips them (`notifications/policy.py`)."""
        kept: list[BulkRecipient] = []
        for index, recipient in enumerate(self.recipients):
            try:
                recipient.email = normalise_address(recipient.email)
            except ValueError as exc:
                self._invalid.append(
                    {"email": recipient.email, "reason": f"recipients[{index}]: {exc}"}
                )
            else:
                kept.append(recipient)
        self.recipients = kept
        return self

    @property
    def invalid_recipients(self) -> list[dict[str, str]]:
        return list(self._invalid)
