"""Batch output written as numbered parts plus a manifest, so a killed job can resume.

The output path is a directory (``scores.parquet/``) holding ``part-00000.parquet``, ``part-00001...``
and ``_manifest.json``. A part is written to a temporary name and renamed into place, then the manifest
is rewritten the same way: a part either is in the manifest and whole on disk, or is redone. Each
manifest entry keeps a hash of the input rows it was made from, so a resumed job proves that its input
is the same, chunk by chunk, before it skips anything. Rejected rows isolated by bisection go to a
JSON-lines file per part in ``_errors/``, committed before their part.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConflictError, InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PartWriter", "chunk_fingerprint", "MANIFEST", "write_frame", "atomic_write", "format_of_output"]

MANIFEST = "_manifest.json"
ERRORS_DIR = "_errors"
MANIFEST_VERSION = 1
_SUFFIX = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}


def chunk_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of the rows' values and column names (not of the index)."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    names = "\x1f".join(map(str, frame.columns))
    return f"{int(hashed.sum()) & 0xFFFFFFFFFFFFFFFF:016x}-{len(frame)}-{hash_text(names)}"


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def format_of_output(path: str, explicit: str | None) -> str:
    """The format of the parts of output ``path``: ``explicit``, else the path's suffix."""
    from ._sources import format_of

    return format_of(path, explicit)


def write_frame(frame: pd.DataFrame, path: str, fmt: str) -> None:
    """Write ``frame`` to ``path`` atomically (temporary file, then rename)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    os.close(fd)
    try:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True, date_format="iso")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class PartWriter:
    """Owns an output directory: what is finished, and committing new parts."""

    def __init__(self, path: str, fmt: str, *, job: dict[str, Any], resume: bool, overwrite: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.job = job
        manifest_path = os.path.join(path, MANIFEST)
        existing = self._read_manifest(manifest_path) if os.path.exists(manifest_path) else None
        if os.path.exists(path) and not os.path.isdir(path):
            raise InvalidInputError(f"Output {path!r} exists and is not a directory of parts")
        if existing is not None and not overwrite:
            if not resume:
                raise ConflictError(
                    f"Output {path!r} holds the parts of an earlier job; pass resume=True to continue it or "
                    "overwrite=True to start over"
                )
            if existing.get("job") != job:
                raise ConflictError(
                    f"Output {path!r} was written by a job with other settings or input "
                    f"({_diff(existing.get('job', {}), job)}); refusing to resume. Pass overwrite=True to start over."
                )
            self.manifest = existing
            # A killed writer leaves its half-written temporary files behind; they are never parts.
            for name in os.listdir(path):
                if name.startswith(".tmp-"):
                    os.unlink(os.path.join(path, name))
            errors_dir = os.path.join(path, ERRORS_DIR)
            if os.path.isdir(errors_dir):
                for name in os.listdir(errors_dir):
                    if name.startswith(".tmp-"):
                        os.unlink(os.path.join(errors_dir, name))
        else:
            if os.path.isdir(path) and (existing is not None or os.listdir(path)):
                if existing is None and not overwrite:
                    raise ConflictError(
                        f"Output directory {path!r} is not empty and holds no deployflow manifest; "
                        "pass overwrite=True to replace its contents"
                    )
                shutil.rmtree(path)
            os.makedirs(path, exist_ok=True)
            self.manifest = {"version": MANIFEST_VERSION, "job": job, "parts": {}, "complete": False}
            self._save()

    @staticmethod
    def _read_manifest(path: str) -> dict[str, Any]:
        try:
            with open(path, "rb") as handle:
                manifest = orjson.loads(handle.read())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConflictError(f"The manifest {path!r} cannot be read ({exc}); pass overwrite=True to start over") from exc
        if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
            raise ConflictError(f"The manifest {path!r} has an unknown format; pass overwrite=True to start over")
        return manifest

    def _save(self) -> None:
        self.manifest["updated_at"] = time.time()
        atomic_write(os.path.join(self.path, MANIFEST), json.dumps(self.manifest, indent=1).encode())

    def part_name(self, index: int) -> str:
        return f"part-{index:05d}{_SUFFIX[self.fmt]}"

    def finished(self, index: int) -> dict[str, Any] | None:
        return self.manifest["parts"].get(str(index))

    def check_unchanged(self, index: int, fingerprint: str) -> dict[str, Any]:
        """The manifest entry of a finished part, once its input is proven unchanged."""
        entry = self.manifest["parts"][str(index)]
        if entry["input_hash"] != fingerprint:
            raise ConflictError(
                f"The input changed since part {index} of {self.path!r} was written (its rows hash differently); "
                "refusing to resume. Pass overwrite=True to start over."
            )
        if not os.path.exists(os.path.join(self.path, entry["file"])):
            raise ConflictError(f"Part file {entry['file']} listed in the manifest of {self.path!r} is missing")
        return entry

    def commit(self, index: int, start: int, rows: int, fingerprint: str, frame: pd.DataFrame, errors: list[dict[str, Any]]) -> None:
        if errors:
            errors_dir = os.path.join(self.path, ERRORS_DIR)
            os.makedirs(errors_dir, exist_ok=True)
            data = b"".join(orjson.dumps(e, option=orjson.OPT_SERIALIZE_NUMPY, default=str) + b"\n" for e in errors)
            atomic_write(os.path.join(errors_dir, f"part-{index:05d}.jsonl"), data)
        name = self.part_name(index)
        write_frame(frame, os.path.join(self.path, name), self.fmt)
        self.manifest["parts"][str(index)] = {
            "file": name,
            "start": start,
            "rows": rows,
            "output_rows": len(frame),
            "failed_rows": len(errors),
            "input_hash": fingerprint,
        }
        self._save()

    def complete(self, total_rows: int, chunks: int) -> None:
        # Parts beyond the last chunk belong to a longer earlier input: they must not stay.
        for key in [k for k in self.manifest["parts"] if int(k) >= chunks]:
            raise ConflictError(
                f"{self.path!r} holds part {key} beyond the end of this input ({chunks} chunks): the input "
                "changed; pass overwrite=True to start over"
            )
        self.manifest["complete"] = True
        self.manifest["total_rows"] = total_rows
        self._save()

    def errors_path(self) -> str:
        return os.path.join(self.path, ERRORS_DIR)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "no difference"
