"""Where a webhook may go: checked at submit and again at each delivery (SSRF).

A target is an `http` or `https` URL whose host resolves only to public addresses, unless
`WEBHOOK_ALLOW_PRIVATE` is set. The check is made twice: at submit (a 422 that says why),
and at delivery time, where the sender then connects to the very address it checked
(`Target.address`), so a name that resolves to a public address at submit and to
127.0.0.1 later (DNS rebinding) is refused rather than followed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.core.config import Settings, get_settings
from app.core.errors import InvalidInputError

MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidWebhookTarget(InvalidInputError):
    """The URL is malformed, or its host is not one the service may call."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    address: str
    """The checked address the sender connects to (never resolved again)."""

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.scheme}://{host}:{self.port}{path}{query}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def why_refused(address: IPAddress) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return why_refused(mapped)
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return kind
    return None if address.is_global else "non-public"


def _parse(url: str) -> tuple[str, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookTarget(f"webhook_url: longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidWebhookTarget("webhook_url: must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise InvalidWebhookTarget(f"webhook_url: not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidWebhookTarget("webhook_url: must be an http:// or https:// URL")
    if not host:
        raise InvalidWebhookTarget("webhook_url: has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookTarget(
            "webhook_url: must not carry credentials (the signature authenticates the service)"
        )
    if parts.fragment:
        raise InvalidWebhookTarget("webhook_url: must not have a #fragment")
    return scheme, host, port or (443 if scheme == "https" else 80)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidWebhookTarget(f"webhook_url: host {host!r} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:  # pragma: no cover - getaddrinfo raises instead
        raise InvalidWebhookTarget(f"webhook_url: host {host!r} does not resolve")
    return addresses


def check(url: str, settings: Settings) -> Target:
    """The target of `url`, resolved and checked; raises `InvalidWebhookTarget` saying why."""
    scheme, host, port = _parse(url)
    addresses = _resolve(host, port)
    if not settings.WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if kind := why_refused(address):
                raise InvalidWebhookTarget(
                    f"webhook_url: {host} resolves to a {kind} address ({address}); "
                    "set WEBHOOK_ALLOW_PRIVATE=true to allow it"
                )
    return Target(url=url, scheme=scheme, host=host, port=port, address=str(addresses[0]))


def job_params(
    params: dict[str, Any], url: str | None, settings: Settings | None = None
) -> dict[str, Any]:
    """A submission's job params with its checked `webhook_url` (none: unchanged)."""
    if url is None:
        return params
    settings = settings or get_settings()
    if settings.ENVIRONMENT == "prod" and not settings.WEBHOOK_SECRET.get_secret_value():
        raise InvalidWebhookTarget(
            "webhook_url: webhooks are not enabled here (WEBHOOK_SECRET is not set)"
        )
    check(url, settings)
    return {**params, "webhook_url": url}
