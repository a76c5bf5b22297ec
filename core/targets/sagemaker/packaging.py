"""Turning an MLflow model into what SageMaker runs: a local model directory, its flavor, ``model.tar.gz``,
and the unique names of the SageMaker model and endpoint config made for it.

Model URIs: a local directory (a path, or ``file://``), ``s3://bucket/prefix`` (downloaded with the
client's credentials), and, with the ``mlflow`` extra installed, every URI MLflow's artifact
repositories read (``runs:/``, ``models:/``, ``mlflow-artifacts:/``, ``dbfs:/``, ...). The directory
must hold an ``MLmodel`` file with a ``python_function`` flavor, the one flavor MLflow's serving image
serves. ``model.tar.gz`` holds the directory's contents at its top level, as MLflow packs it.

Names: ``<name>-model-<20 hex digits>`` and ``<name>-config-<20 hex digits>``, at most 63 characters
(SageMaker's limit): a longer deployment name loses its middle, replaced by ``---``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..._extras import require
from ...errors import InvalidInputError

__all__ = [
    "PYFUNC",
    "ModelDirectory",
    "local_model",
    "normal_model_uri",
    "read_flavors",
    "choose_flavor",
    "make_archive",
    "unique_name",
    "split_s3_url",
]

PYFUNC = "python_function"
_FLAVOR_ALIASES = {"pyfunc": PYFUNC, PYFUNC: PYFUNC}
_MAX_NAME = 63
_TOP_KEY = re.compile(r"^([A-Za-z0-9_.-]+)\s*:")


@dataclass(frozen=True)
class ModelDirectory:
    """A local MLflow model directory and the flavor it will be served with."""

    path: Path
    flavor: str


def normal_model_uri(model_uri: str) -> str:
    """``model_uri`` as it is recorded on the SageMaker model: a local path made absolute, a URI as given."""
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise InvalidInputError(f"model_uri must be a non-empty string, got {model_uri!r}")
    text = model_uri.strip()
    scheme = urlparse(text).scheme
    if not scheme or len(scheme) == 1:
        return os.path.abspath(os.path.expanduser(text))
    return text


@contextlib.contextmanager
def local_model(
    model_uri: str, flavor: str | None, *, download_s3: Callable[[str, Path], None]
) -> Iterator[ModelDirectory]:
    """The model of ``model_uri`` as a local directory (downloaded to a temporary one, removed afterwards,
    when it is remote), checked to be an MLflow model with a flavor SageMaker can serve."""
    text = normal_model_uri(model_uri)
    parsed = urlparse(text)
    scheme = parsed.scheme if len(parsed.scheme) > 1 else ""
    temporary: str | None = None
    try:
        if not scheme:
            path = Path(text)
        elif scheme == "file":
            path = Path(unquote(parsed.path))
        elif scheme == "s3":
            temporary = tempfile.mkdtemp(prefix="deployflow-sagemaker-")
            path = Path(temporary) / "model"
            download_s3(text, path)
        else:
            mlflow_artifacts = require(
                "mlflow.artifacts", "mlflow", f"deploying the {scheme}: model URI {text!r} to SageMaker"
            )
            temporary = tempfile.mkdtemp(prefix="deployflow-sagemaker-")
            path = Path(mlflow_artifacts.download_artifacts(artifact_uri=text, dst_path=temporary))
        flavors = read_flavors(path)
        yield ModelDirectory(path=path, flavor=choose_flavor(flavors, flavor, where=text))
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def read_flavors(directory: Path) -> list[str]:
    """The flavor names in ``directory/MLmodel``. Raises :class:`InvalidInputError` when ``directory`` is
    not an MLflow model directory."""
    if not directory.is_dir():
        raise InvalidInputError(f"{str(directory)!r} is not a directory: model_uri must name an MLflow model directory")
    mlmodel = directory / "MLmodel"
    if not mlmodel.is_file():
        raise InvalidInputError(
            f"{str(directory)!r} has no MLmodel file: model_uri must name an MLflow model directory "
            "(the one mlflow.<flavor>.save_model or log_model wrote)"
        )
    text = mlmodel.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:
        return _flavors_without_yaml(text)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidInputError(f"{str(mlmodel)!r} is not valid YAML: {error}") from None
    flavors = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavors, dict) or not flavors:
        raise InvalidInputError(f"{str(mlmodel)!r} lists no flavors")
    return [str(name) for name in flavors]


def _flavors_without_yaml(text: str) -> list[str]:
    """The keys of the top-level ``flavors:`` block of an MLmodel file (MLflow writes block-style YAML)."""
    lines = text.splitlines()
    flavors: list[str] = []
    inside = False
    indent: int | None = None
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        depth = len(line) - len(line.lstrip(" "))
        if depth == 0:
            inside = line.split(":", 1)[0].strip() == "flavors"
            indent = None
            continue
        if inside:
            if indent is None:
                indent = depth
            if depth == indent:
                match = _TOP_KEY.match(line.strip())
                if match:
                    flavors.append(match.group(1))
    if not flavors:
        raise InvalidInputError("The MLmodel file lists no flavors")
    return flavors


def choose_flavor(flavors: list[str], flavor: str | None, *, where: str) -> str:
    """``python_function`` when the model has it and the caller asked for it or for nothing."""
    wanted = PYFUNC if flavor is None else _FLAVOR_ALIASES.get(str(flavor).strip().lower())
    if wanted is None:
        raise InvalidInputError(
            f"MLflow's SageMaker serving image serves the {PYFUNC!r} flavor only; flavor {flavor!r} is not supported"
        )
    if wanted not in flavors:
        raise InvalidInputError(
            f"The model at {where!r} has no {PYFUNC!r} flavor (its flavors: {', '.join(flavors)}), which "
            "MLflow's SageMaker serving image needs"
        )
    return wanted


def make_archive(directory: Path, target: Path) -> Path:
    """Write ``target`` (``model.tar.gz``) holding the contents of ``directory`` at its top level."""
    with tarfile.open(target, "w:gz") as archive:
        for entry in sorted(os.listdir(directory)):
            archive.add(directory / entry, arcname=entry)
    return target


def unique_name(base: str, kind: str) -> str:
    """``<base>-<kind>-<20 hex digits>`` within SageMaker's 63 characters.

    >>> len(unique_name("a" * 80, "model"))
    63
    """
    suffix = f"-{kind}-{uuid.uuid4().hex[:20]}"
    room = _MAX_NAME - len(suffix)
    if len(base) > room:
        keep = room - 3
        head = keep // 2
        base = f"{base[:head]}---{base[len(base) - (keep - head):]}"
    return base + suffix


def split_s3_url(url: str) -> tuple[str, str]:
    """``("bucket", "key")`` of ``s3://bucket/key``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidInputError(f"{url!r} is not an s3://bucket/key URL")
    return parsed.netloc, parsed.path.lstrip("/")
