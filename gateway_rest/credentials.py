"""Credentials the shim checks itself, before it reads a request body.

A request with a wrong token or callback secret is answered from its head alone: its body is never
read, parsed or converted, so an unauthenticated sender of large bodies costs the event loop no more
than one of small ones. The JobService checks the same credentials again (it is the authority: it
knows about users, and it serves gRPC clients directly); the checks here use the same code
(``TokenService``, ``check_callback_secret``), so both answer the same codes and messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from server.config.sections import AuthConfig
from server.service.callbacks import check_callback_secret
from server.service.tokens import TokenService


class Credential(enum.Enum):
    """What a route needs before its body is read."""

    NONE = "none"
    BEARER = "bearer"
    """``Authorization: Bearer <JWT>`` signed by the service and not expired."""
    BEARER_OR_STREAM_TOKEN = "bearer_or_stream_token"
    """A bearer token, or without one a job stream token for the path's job in ``?token=`` (the
    event stream, for browsers' ``EventSource``, which cannot send headers)."""
    CALLBACK = "callback"
    """``X-Callback-Secret``: a remote worker."""


@dataclass(frozen=True)
class EdgeCredentials:
    tokens: TokenService
    callback_secret: str

    @classmethod
    def from_config(cls, auth: AuthConfig) -> EdgeCredentials:
        """From resolved settings (``server.config.resolve_secrets``): the secrets must be set."""
        if auth.jwt_secret is None or auth.callback_secret is None:
            raise ValueError("resolve the settings' secrets before building the shim's credentials")
        return cls(TokenService(auth.jwt_secret, auth.jwt_ttl_s), auth.callback_secret)

    def check(self, conn: HTTPConnection, credential: Credential) -> None:
        """Raise the contract's AUTH_REQUIRED / INVALID_TOKEN / FORBIDDEN error when ``credential`` fails."""
        authorization = conn.headers.get("authorization")
        if credential is Credential.BEARER:
            self.tokens.user_from_authorization(authorization)
        elif credential is Credential.BEARER_OR_STREAM_TOKEN:
            self.tokens.bearer_or_stream(authorization, conn.query_params.get("token"), conn.path_params.get("job_id"))
        elif credential is Credential.CALLBACK:
            check_callback_secret(conn.headers.get("x-callback-secret"), self.callback_secret)
