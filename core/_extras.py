"""Optional dependencies: one place that says which extra installs what, and one error when it is missing.

``pip install deployflow`` brings only what a client of remote targets and the CLI need. Everything else
comes with an extra (``pip install 'deployflow[local]'``); a feature whose extra is missing raises
:class:`~deployflow.errors.MissingExtraError` naming the command, through :func:`require`::

    pd = require("pandas", "batch", "batch scoring")
    # MissingExtraError: batch scoring needs the 'batch' extra: pip install 'deployflow[batch]'
    # (missing module: pandas)

Nothing here imports an optional module at import time. :func:`require_extra` only looks modules up
(``importlib.util.find_spec``), so a client process does not pay for a pandas import it never uses.
"""

from __future__ import annotations

import importlib
import threading
import types
from typing import Optional

from .errors import DeploymentError, MissingExtraError

__all__ = ["EXTRA_MODULES", "install_command", "require", "require_extra"]

#: The modules a feature cannot work without, per extra (what :func:`require_extra` checks). Speed-ups
#: that are used when present (uvloop, httptools) and modules needed by one path only (joblib for the
#: joblib flavor, tqdm for the progress bar) are checked where they are used instead.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    # The model server and router run in their own processes: checked up front so that a missing
    # module is reported here, not as a server that fails to start.
    "local": ("uvicorn", "numpy", "pandas", "psutil", "filelock", "aiohttp"),
    "batch": ("pandas", "numpy", "pyarrow", "aiohttp"),
}

_checked: set[tuple[str, str]] = set()  # (extra, module) found installed; misses are never cached
_checked_lock = threading.Lock()


def install_command(extra: str) -> str:
    """The pip command that installs ``extra``: ``pip install 'deployflow[extra]'``."""
    return f"pip install 'deployflow[{extra}]'"


def require(
    module: str,
    extra: Optional[str],
    feature: str,
    *,
    package: Optional[str] = None,
    error: type[DeploymentError] = MissingExtraError,
) -> types.ModuleType:
    """Import and return ``module`` for ``feature``, or raise an error that says what to install.

    :param extra: the deployflow extra that installs ``module``; ``None`` for a dependency that is not
        part of an extra, installed on its own as ``package`` (``pip install <package>``).
    :param feature: what needs it, as the start of a sentence ("the 'local' target", "batch scoring").
    :param error: the class raised (default :class:`MissingExtraError`), for the few callers whose
        contract is another class; the message is the same.
    :raises MissingExtraError: (or ``error``) when the module, or a module it needs, is not installed:
        "<feature> needs the '<extra>' extra: pip install 'deployflow[<extra>]' (missing module: <name>)".
    """
    try:
        return importlib.import_module(module)
    except MissingExtraError:
        raise
    except ImportError as exc:
        raise _missing(exc, module, extra, feature, package, error) from exc


def require_extra(extra: str, feature: str) -> None:
    """Check, without importing them, that every module :data:`EXTRA_MODULES` lists for ``extra`` is
    installed (an extra it does not list needs nothing checked); raises :class:`MissingExtraError`
    naming the first one missing. Found modules are remembered for the process."""
    import importlib.util  # here, not at the top: `import deployflow` does not need it

    for module in EXTRA_MODULES.get(extra, ()):
        if (extra, module) in _checked:
            continue
        try:
            try:
                found = importlib.util.find_spec(module) is not None
            except ValueError:  # imported already, without a spec (made at run time): it is there
                found = True
            if not found:
                raise ModuleNotFoundError(f"No module named {module!r}", name=module)
        except ImportError as exc:  # also raised by find_spec when a parent package is missing
            raise _missing(exc, module, extra, feature, None, MissingExtraError) from exc
        with _checked_lock:
            _checked.add((extra, module))


def _missing(
    exc: ImportError,
    module: str,
    extra: Optional[str],
    feature: str,
    package: Optional[str],
    error: type[DeploymentError],
) -> DeploymentError:
    """The one message: what needs it, what to install, and what was missing."""
    if extra is None and package is None:
        raise ValueError("name an extra or a package to install") from exc
    # A module that is there but needs another missing one (pandas without numpy) names the one that
    # is really missing; one that is there but fails to import (a version mismatch) says so.
    missing = exc.name or module
    if isinstance(exc, ModuleNotFoundError):
        detail = f"missing module: {missing}"
    else:
        detail = f"importing {module} failed: {exc}"
    if extra is not None:
        message = f"{feature} needs the {extra!r} extra: {install_command(extra)} ({detail})"
    else:
        message = f"{feature} needs {package}: pip install {package} ({detail})"
    if error is MissingExtraError:
        return MissingExtraError(message, extra=extra, module=missing)
    return error(message)
