"""User tokens: HS256 JWTs signed by the service, ``sub`` = user id.

Job stream tokens are a second kind, for clients that cannot send headers (a browser's
``EventSource``): short-lived, for one job's event stream only, carried in the URL. They carry an
audience (``aud``) that access tokens lack, so neither is accepted in place of the other (PyJWT
refuses a token with an audience where none is expected, and one without where one is).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from server.clock import utcnow
from server.config.sections import AuthConfig
from server.errors import AuthRequired, InvalidToken

ALGORITHM = "HS256"
ISSUER = "s3"
STREAM_AUDIENCE = "s3:job-stream"
# Clock skew tolerated between the service's hosts when checking exp/iat/nbf.
LEEWAY_S = 5


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class Bearer:
    """A verified token: whose it is and until when it may be used (long-lived calls end then)."""

    user_id: str
    expires_at: datetime


class TokenService:
    def __init__(self, secret: str, ttl_s: int, *, stream_ttl_s: int = AuthConfig.stream_token_ttl_s) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT secret must be at least 32 characters")
        self._secret = secret
        self._ttl = timedelta(seconds=ttl_s)
        self._stream_ttl = timedelta(seconds=stream_ttl_s)

    def issue(self, user_id: str) -> IssuedToken:
        now = utcnow()
        expires = now + self._ttl
        claims = {"sub": user_id, "iat": now, "nbf": now, "exp": expires, "iss": ISSUER}
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires)

    def verify(self, token: str) -> str:
        """The user id of a valid token; :class:`InvalidToken` for anything else."""
        return self.verify_bearer(token).user_id

    def verify_bearer(self, token: str) -> Bearer:
        """The user id and expiry of a valid token; :class:`InvalidToken` for anything else."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # fixed list: rejects alg=none and RS/HS confusion
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["sub", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise InvalidToken("the token has expired") from e
        except jwt.PyJWTError as e:
            raise InvalidToken("the token is not valid") from e
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("the token has no subject")
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise InvalidToken("the token's expiry is not a number")
        return Bearer(sub, datetime.fromtimestamp(exp, UTC))

    def issue_stream(self, user_id: str, job_id: str) -> IssuedToken:
        """A token that opens ``job_id``'s event stream, and nothing else, for a few minutes."""
        now = utcnow()
        expires = now + self._stream_ttl
        claims = {
            "sub": user_id,
            "job": job_id,
            "aud": STREAM_AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "iss": ISSUER,
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires)

    def verify_stream(self, token: str, job_id: str | None) -> Bearer:
        """The user and expiry of a live stream token for ``job_id`` (None: for any job, when the job
        is not known yet); :class:`InvalidToken` otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                audience=STREAM_AUDIENCE,
                leeway=LEEWAY_S,
                options={"require": ["sub", "exp", "iat", "aud", "job"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise InvalidToken("the stream token has expired") from e
        except jwt.PyJWTError as e:
            raise InvalidToken("the stream token is not valid") from e
        sub = claims.get("sub")
        if (job_id is not None and claims.get("job") != job_id) or not isinstance(sub, str) or not sub:
            raise InvalidToken("the stream token is for another job")
        return Bearer(sub, datetime.fromtimestamp(claims["exp"], UTC))

    def bearer_or_stream(self, authorization: str | None, stream_token: str | None, job_id: str | None) -> Bearer:
        """What opens a job's event stream: the ``Authorization`` header when sent, else a stream token
        for ``job_id`` (None: any job, when it is not known yet)."""
        if stream_token and not authorization:
            return self.verify_stream(stream_token, job_id)
        return self.bearer_from_authorization(authorization)

    def user_from_authorization(self, header: str | None) -> str:
        """Parse ``Authorization: Bearer <token>``."""
        return self.bearer_from_authorization(header).user_id

    def bearer_from_authorization(self, header: str | None) -> Bearer:
        """Parse and verify ``Authorization: Bearer <token>``."""
        if not header:
            raise AuthRequired("authentication required: send Authorization: Bearer <token>")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be 'Bearer <token>'")
        return self.verify_bearer(token.strip())
