"""Where a webhook may point. Checked when it is saved (the address) and before every call (the
addresses its host resolves to), so a name that later resolves elsewhere is caught too.

- http:// or https:// only, no user name or password in the address, at most 500 characters;
- STUDIO_WEBHOOK_ALLOWED_HOSTS, when set, lists the only hosts allowed (names, *.suffixes, networks);
- link-local, multicast and unspecified addresses are always refused (169.254.169.254 is where
  clouds serve instance credentials); with STUDIO_WEBHOOK_BLOCK_PRIVATE, loopback and private too.
Redirects are never followed (app/notifications/delivery.py), so a receiver cannot bounce the
call elsewhere. A name resolved here and again by the HTTP client could change in between (DNS
rebinding): an administrator who needs a hard boundary uses the allowlist or an egress firewall."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from app.config import Settings
from app.errors import InvalidInput

MAX_URL = 500


def _allowed_entries(settings: Settings) -> list[str]:
    return [h.strip().lower() for h in settings.webhook_allowed_hosts.split(",") if h.strip()]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_allowed(host: str, settings: Settings) -> bool:
    entries = _allowed_entries(settings)
    if not entries:
        return True
    host, ip = host.lower(), _ip(host)
    for entry in entries:
        if "/" in entry and ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def check_url(url: str, settings: Settings) -> str:
    """The address, trimmed, or a clear refusal (param "url")."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("The webhook address must start with http:// or https://, such as "
                           "https://hooks.example.com/studio.", param="url")
    if len(url) > MAX_URL or parts.username or parts.password:
        raise InvalidInput(f"Give the address without a user name or password, in at most {MAX_URL} characters "
                           "(the receiver checks the signature instead).", param="url")
    if not host_allowed(parts.hostname, settings):
        raise InvalidInput(f"This studio only calls the hosts its administrator allowed "
                           f"(STUDIO_WEBHOOK_ALLOWED_HOSTS): {parts.hostname} is not one of them.", param="url")
    ip = _ip(parts.hostname)
    if ip is not None:
        refused = refusal(ip, settings)
        if refused:
            raise InvalidInput(f"The studio does not call {refused} addresses such as {ip}.", param="url")
    return url


def refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: Settings) -> str | None:
    """Why this address may not be called ("link-local", "private"), or None."""
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_unspecified:
        return "multicast or unspecified"
    if settings.webhook_block_private and (ip.is_loopback or ip.is_private):
        return "loopback or private"
    return None


def check_destination(url: str, settings: Settings) -> None:
    """Before a call: the host is still allowed and none of its addresses is refused. Raises
    InvalidInput with the reason (recorded on the attempt)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host_allowed(host, settings):
        raise InvalidInput(f"{host} is not in STUDIO_WEBHOOK_ALLOWED_HOSTS.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise InvalidInput(f"The host {host} could not be resolved ({exc.strerror}).") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        refused = refusal(ip, settings)
        if refused:
            raise InvalidInput(f"{host} resolves to {ip}, a {refused} address the studio does not call.")
