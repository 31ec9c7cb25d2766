"""Who is signed in to the console: a signed, HttpOnly, SameSite=Strict cookie, and the CSRF token
every form must carry.

The operator (console password) sees every client; a client's API key opens the console on that
client's own records only. The cookie holds no secret: it is signed with the secret key and
expires with `SESSION_MAX_AGE_S`. It is bound to what signed it in, by a keyed digest: a changed
console password ends every operator session, and a client's session ends when the key it signed
in with stops working (rotated out, or the client revoked). Signing out records the session's id
as ended, so a copy of the cookie stops working too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from service.keys import KEYS

COOKIE = "pixhook_console"
LOGIN_COOKIE = "pixhook_console_login"
SESSION_MAX_AGE_S = 8 * 3600
LOGIN_FORM_MAX_AGE_S = 3600
CONSOLE_PATH = "/console"


@dataclass(frozen=True)
class ConsoleSession:
    client_id: str | None  # None: the operator
    csrf: str
    id: str
    binding: str  # keyed digest of the console password, or of the client's API key digest

    @property
    def operator(self) -> bool:
        return self.client_id is None


class Sessions:
    def __init__(self, secret_key: str, *, secure: bool) -> None:
        self._sessions = URLSafeTimedSerializer(secret_key, salt="pixhook console session")
        binding_context = b"pixhook console binding\0" + secret_key.encode()
        self._binding_key = hashlib.sha256(binding_context).digest()
        self._login_forms = URLSafeTimedSerializer(secret_key, salt="pixhook console login")
        self._secure = secure

    def start(self, response: Response, client_id: str | None, signed_in_with: str) -> None:
        """Sign in: a new session, with a CSRF token of its own, replacing any earlier one."""
        binding = self.binding(signed_in_with)
        payload = {"client_id": client_id, "csrf": new_token(), "id": new_token(), "b": binding}
        self._set(response, COOKIE, self._sessions.dumps(payload), SESSION_MAX_AGE_S)
        response.delete_cookie(LOGIN_COOKIE, path=CONSOLE_PATH)

    def end(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=CONSOLE_PATH)

    def current(self, request: Request) -> ConsoleSession | None:
        raw = request.cookies.get(COOKIE)
        if raw is None:
            return None
        try:
            payload: Any = self._sessions.loads(raw, max_age=SESSION_MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(payload, dict):
            return None
        csrf, session_id, binding = (payload.get(name) for name in ("csrf", "id", "b"))
        if not all(isinstance(value, str) for value in (csrf, session_id, binding)):
            return None  # includes sessions from before sessions were bound: sign in again
        client_id = payload.get("client_id")
        return ConsoleSession(
            client_id if isinstance(client_id, str) else None,
            str(csrf),
            str(session_id),
            str(binding),
        )

    def binding(self, signed_in_with: str) -> str:
        """A keyed digest of the console password or key digest: the cookie shows nothing of it."""
        digest = hmac.new(self._binding_key, signed_in_with.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def bound_to(self, session: ConsoleSession, candidates: list[str]) -> bool:
        """Whether the session was signed in with one of `candidates`, which still work."""
        return any([hmac.compare_digest(session.binding, self.binding(c)) for c in candidates])

    def remember_login_token(self, response: Response, token: str) -> None:
        """The login form's CSRF token, also set as a cookie: a cross-site page can post the form
        but cannot read or set the cookie, so it cannot make a victim sign in as someone else."""
        self._set(response, LOGIN_COOKIE, self._login_forms.dumps(token), LOGIN_FORM_MAX_AGE_S)

    def login_token_matches(self, request: Request, submitted: str) -> bool:
        raw = request.cookies.get(LOGIN_COOKIE)
        if raw is None:
            return False
        try:
            expected = self._login_forms.loads(raw, max_age=LOGIN_FORM_MAX_AGE_S)
        except BadSignature:
            return False
        return isinstance(expected, str) and hmac.compare_digest(expected, submitted)

    def _set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=CONSOLE_PATH,
            secure=self._secure,
            httponly=True,
            samesite="strict",
        )


def ended_key(session_id: str) -> str:
    """Set when a session signs out, until its cookie would have expired anyway."""
    return KEYS.console_ended(session_id)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_matches(session: ConsoleSession, submitted: object) -> bool:
    return isinstance(submitted, str) and hmac.compare_digest(session.csrf, submitted)
