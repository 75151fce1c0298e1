"""A proxy the environment names (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, less
``NO_PROXY``'s hosts) is blamed, not base_url or the API key, when it cannot be used: a proxy
URL whose password holds an unencoded ``/`` or ``#``, or that lacks its scheme, was "a header or
the URL holds a character HTTP does not allow; check base_url and the API key", and a proxy that
refused the connection "check base_url (host and port)". The proxy's URL is never shown: it may
hold a user and password."""

from __future__ import annotations

from typing import Any

import requests
from requests.utils import resolve_proxies, select_proxy

from .messages import hint


def through_proxy(session: requests.Session, request: requests.PreparedRequest,
                  send_kwargs: dict[str, Any]) -> bool:
    """Whether ``request`` goes through a proxy (as requests' own ``send`` chooses one)."""
    proxies = send_kwargs.get("proxies") or resolve_proxies(request, session.proxies,
                                                            session.trust_env)
    return bool(select_proxy(request.url or "", proxies))


def malformed_proxy(exc: ValueError, proxied: bool) -> str | None:
    """The words for a request refused because its proxy's URL could not be read; None when
    the refusal is not the proxy's."""
    if isinstance(exc, requests.exceptions.InvalidProxyURL) or (
            proxied and isinstance(exc, requests.exceptions.InvalidURL)):
        return f"the proxy's URL (not shown) could not be read; {hint('proxy')}"
    return None


def proxy_refused(exc: Exception, host: str) -> str | None:
    """The words for a proxy that could not be reached or refused to connect to ``host``;
    None for any other failure."""
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"could not connect to {host} through the proxy (ProxyError); {hint('proxy')}"
    return None
