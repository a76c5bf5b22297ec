"""Batch output written as numbered parts, so a killed job can resume.

The output path is a directory (``scores.parquet/``) holding ``part-00000.parquet``, ``part-00001...``,
``_manifest.json`` (the job's settings, and the list of parts once the job is complete) and ``_parts/``
with one small record per finished part. A part holds the output of one or more whole input chunks
(``part_rows`` of :func:`~deployflow.batch_predict`), so a job writes a file per 100,000 rows rather than
per request. A part is committed in three atomic steps: its rejected rows
(if any) go to ``_errors/part-NNNNN.jsonl``, its rows to ``part-NNNNN.<fmt>``, and last its record
``_parts/NNNNN.json``, each written under a temporary name and renamed into place. The record is the
commit point: a part with a record is whole on disk; anything without one is redone. Each record keeps a
hash of the input rows of each chunk the part was made from, so a resumed job proves its input is the
same, chunk by chunk, before it skips anything. One record per part keeps a commit's cost constant: rewriting one
growing manifest per part would cost time and memory in proportion to the parts already done.
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
PARTS_DIR = "_parts"
MANIFEST_VERSION = 2
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
        # No fsync: the rename makes the write all-or-nothing for a killed process, which is what
        # resuming needs; a machine that loses power mid-job is rerun with overwrite=True.
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
            for folder in (path, os.path.join(path, ERRORS_DIR), os.path.join(path, PARTS_DIR)):
                if os.path.isdir(folder):
                    for name in os.listdir(folder):
                        if name.startswith(".tmp-"):
                            os.unlink(os.path.join(folder, name))
            self.parts = self._read_part_records()
        else:
            if os.path.isdir(path) and (existing is not None or os.listdir(path)):
                if existing is None and not overwrite:
                    raise ConflictError(
                        f"Output directory {path!r} is not empty and holds no deployflow manifest; "
                        "pass overwrite=True to replace its contents"
                    )
                shutil.rmtree(path)
            os.makedirs(os.path.join(path, PARTS_DIR), exist_ok=True)
            self.manifest = {"version": MANIFEST_VERSION, "job": job, "parts": {}, "complete": False}
            self.parts: dict[str, dict[str, Any]] = {}
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

    def _read_part_records(self) -> dict[str, dict[str, Any]]:
        folder = os.path.join(self.path, PARTS_DIR)
        records: dict[str, dict[str, Any]] = {}
        if not os.path.isdir(folder):
            return records
        for name in os.listdir(folder):
            if name.endswith(".json"):
                with open(os.path.join(folder, name), "rb") as handle:
                    records[str(int(name[:-5]))] = orjson.loads(handle.read())
        return records

    def part_name(self, index: int) -> str:
        return f"part-{index:05d}{_SUFFIX[self.fmt]}"

    def finished(self, index: int) -> dict[str, Any] | None:
        return self.parts.get(str(index))

    def check_unchanged(self, index: int, offset: int, fingerprint: str) -> dict[str, Any]:
        """The record of finished part ``index``, once its chunk number ``offset`` is proven unchanged."""
        entry = self.parts[str(index)]
        hashes = entry["input_hashes"]
        if offset >= len(hashes) or hashes[offset] != fingerprint:
            raise ConflictError(
                f"The input changed since part {index} of {self.path!r} was written (its rows hash differently); "
                "refusing to resume. Pass overwrite=True to start over."
            )
        if not os.path.exists(os.path.join(self.path, entry["file"])):
            raise ConflictError(f"Part file {entry['file']} listed in the manifest of {self.path!r} is missing")
        return entry

    def commit(
        self, index: int, start: int, rows: int, fingerprints: list[str], frame: pd.DataFrame, errors: list[dict[str, Any]]
    ) -> None:
        """Write part ``index`` (input rows ``start``.., the chunks hashing to ``fingerprints``)."""
        if errors:
            errors_dir = os.path.join(self.path, ERRORS_DIR)
            os.makedirs(errors_dir, exist_ok=True)
            data = b"".join(orjson.dumps(e, option=orjson.OPT_SERIALIZE_NUMPY, default=str) + b"\n" for e in errors)
            atomic_write(os.path.join(errors_dir, f"part-{index:05d}.jsonl"), data)
        name = self.part_name(index)
        write_frame(frame, os.path.join(self.path, name), self.fmt)
        record = {
            "file": name,
            "start": start,
            "rows": rows,
            "output_rows": len(frame),
            "failed_rows": len(errors),
            "input_hashes": fingerprints,
        }
        # The commit point: only now does the part count as done.
        atomic_write(os.path.join(self.path, PARTS_DIR, f"{index:05d}.json"), orjson.dumps(record))
        self.parts[str(index)] = record

    def complete(self, total_rows: int, parts: int) -> None:
        # Parts beyond the last one belong to a longer earlier input: they must not stay.
        for key in [k for k in self.parts if int(k) >= parts]:
            raise ConflictError(
                f"{self.path!r} holds part {key} beyond the end of this input ({parts} parts): the input "
                "changed; pass overwrite=True to start over"
            )
        self.manifest["complete"] = True
        self.manifest["total_rows"] = total_rows
        self.manifest["parts"] = {key: self.parts[key] for key in sorted(self.parts, key=int)}
        self._save()

    def errors_path(self) -> str:
        return os.path.join(self.path, ERRORS_DIR)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "no difference"
