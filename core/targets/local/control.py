"""The per-endpoint control secret: what a router asks for on the paths that change or reveal its state.

A router's ``/-/reload``, ``/-/routes`` and ``/metrics`` answer only a request carrying
``Authorization: Bearer <secret>``. The client makes one secret per router process when it starts it,
keeps it in the process's directory in the state dir as ``control.secret`` with mode 0600 (readable by
the state dir's owner only, as the state itself), and hands it to the router in the environment
variable :data:`CONTROL_SECRET_ENV`, never on its command line (which any local user can read in
``ps``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ...redaction import register_secret

__all__ = ["CONTROL_SECRET_ENV", "SECRET_FILE", "make_secret", "read_secret", "take_secret"]

#: The environment variable through which a router receives its control secret.
CONTROL_SECRET_ENV = "DEPLOYFLOW_CONTROL_SECRET"
#: The file, in a router process's directory, holding its control secret.
SECRET_FILE = "control.secret"


def make_secret(directory: Path) -> str:
    """A new secret, written to ``directory/control.secret`` with mode 0600 (created, never replaced)."""
    secret = secrets.token_urlsafe(32)
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as stream:
        stream.write(secret)
    register_secret(secret)
    return secret


def read_secret(directory: str | os.PathLike[str] | None) -> str | None:
    """The control secret kept in ``directory``, or ``None`` when there is none (an older router)."""
    if not directory:
        return None
    try:
        secret = (Path(directory) / SECRET_FILE).read_text(encoding="ascii").strip()
    except OSError:
        return None
    register_secret(secret)
    return secret or None


def take_secret() -> bytes | None:
    """The secret this process was given (see the module docstring); ``os.environ`` no longer holds it."""
    secret = os.environ.pop(CONTROL_SECRET_ENV, "").strip()
    if not secret:
        return None
    register_secret(secret)
    return secret.encode("ascii")
