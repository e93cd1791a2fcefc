"""Recognising pages that are not what was asked for, such as login walls."""

from __future__ import annotations

import re

_PASSWORD_FIELD = re.compile(rb"<input[^>]+type\s*=\s*[\"']?password", re.IGNORECASE)
_LOGIN_WORDS = re.compile(
    rb"log\s*in|sign\s*in|anmelden|einloggen|se connecter|iniciar sesi", re.IGNORECASE
)


def looks_like_login_wall(html: bytes) -> bool:
    """A password field next to log-in wording: platforms answer 200 with such a form."""
    return bool(_PASSWORD_FIELD.search(html)) and bool(_LOGIN_WORDS.search(html))
