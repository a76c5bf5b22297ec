"""Batch output written as numbered parts, so a killed job can resume; optionally one file at the end.

Where the parts go. An output path that ends with a slash, has no suffix, or already is a directory is
a *directory of parts*: the parts stay there and are the output. Any other path (``scores.parquet``,
``scores.csv``, ``scores.jsonl``) is a *single file*: the parts are staged in a hidden directory beside
it (``.scores.csv.parts/``), joined into one file under a temporary name in that directory when the job
ends, and renamed to ``scores.csv``, so the file is whole or absent. After the rename the staged parts
are deleted; the manifest and the part records stay, so running the finished job again scores nothing.

The parts directory holds ``part-00000.parquet``, ``part-00001...``, ``_manifest.json`` (the job's
settings, and the list of parts once the job is complete) and ``_parts/`` with one small record per
finished part. A part holds the output of one or more whole input chunks (``part_rows`` of
:func:`~deployflow.batch_predict`), so a job writes a file per 100,000 rows rather than per request. A
part is committed in three atomic steps: its rejected rows (if any) go to ``_errors/part-NNNNN.jsonl``,
its rows to ``part-NNNNN.<fmt>``, and last its record ``_parts/NNNNN.json``, each written under a
temporary name and renamed into place. The record is the commit point: a part with a record is whole on
disk; anything without one is redone. Each record keeps a hash of the input rows of each chunk the part
was made from, so a resumed job proves its input is the same, chunk by chunk, before it skips anything.
One record per part keeps a commit's cost constant: rewriting one growing manifest per part would cost
time and memory in proportion to the parts already done.

The job settings in the manifest are what a resumed job must match. They pass through
:func:`deployflow.redaction.redact` before they are written or compared, so a password in the target
URI or the input URL is neither stored nor part of the job's identity.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConflictError, InvalidInputError
from ..redaction import MASK, redact

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PartWriter",
    "OutputPlan",
    "plan_output",
    "staging_dir",
    "part_number",
    "check_can_create",
    "chunk_fingerprint",
    "MANIFEST",
    "write_frame",
    "atomic_write",
    "format_of_output",
    "merge_parts",
    "secret_free",
]

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

    return format_of(path, explicit, argument="output_format")


_COMPRESSED = (".gz", ".bz2", ".zst", ".xz")


@dataclass(frozen=True)
class OutputPlan:
    """Where a job's output goes: ``path`` (a single file, or a directory of parts) and its format."""

    path: str
    fmt: str
    single_file: bool

    @property
    def parts_dir(self) -> str:
        """The directory the parts and resume records are written to."""
        return staging_dir(self.path) if self.single_file else self.path

    def default_errors_path(self) -> str:
        """Where rejected rows go when the caller names no errors file."""
        if self.single_file:
            return f"{self.path}.errors.jsonl"
        return os.path.join(self.path, ERRORS_DIR)


def part_number(path: str) -> tuple[int, str]:
    """A sort key that puts ``part-2`` before ``part-10``."""
    digits = "".join(ch for ch in os.path.basename(path) if ch.isdigit())
    return (int(digits) if digits else -1, path)


def staging_dir(path: str) -> str:
    """The hidden directory beside single-file output ``path`` where its parts are staged."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.parts")


def plan_output(output: str | os.PathLike[str], explicit_format: str | None) -> OutputPlan:
    """Read ``output`` as a single file or a directory of parts (the rule is in the module docstring)."""
    raw = os.fspath(output) if isinstance(output, (str, os.PathLike)) else None
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInputError(f"output must be a file or directory path, got {output!r}")
    separators = ("/", os.sep)
    path = raw.rstrip("".join(set(separators))) or raw
    directory = raw.endswith(separators) or os.path.isdir(path) or not os.path.splitext(os.path.basename(path))[1]
    fmt = format_of_output(path, explicit_format)
    if not directory and path.lower().endswith(_COMPRESSED):
        raise InvalidInputError(
            f"Output {path!r} names a compressed file; batch output is written uncompressed. Use a name "
            "ending in .parquet, .csv or .jsonl"
        )
    return OutputPlan(path, fmt, not directory)


def check_can_create(path: str, what: str) -> None:
    """Raise :class:`~deployflow.errors.InvalidInputError` unless ``path`` can be written: an existing
    directory must be writable; anything else is created (or replaced) through its nearest existing
    ancestor, which must be a writable directory. Creates nothing."""
    target = os.path.abspath(path)
    existing = target
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if existing == target and not os.path.isdir(target):
        existing = os.path.dirname(target)  # an existing file is replaced by a rename in its directory
    if not os.path.isdir(existing):
        raise InvalidInputError(f"Cannot write the {what} {path!r}: {existing!r} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(f"Cannot write the {what} {path!r}: the directory {existing!r} is not writable")


def secret_free(value: Any) -> Any:
    """``value`` as plain JSON data with credentials masked (:func:`deployflow.redaction.redact`), so it
    can be written to disk and compared across runs whose secrets differ. A value whose key names a
    secret (``"password": ...``) is masked whole; a credential inside a string (``user:pw@host``) is
    masked in place."""
    return _masked(orjson.loads(orjson.dumps(value, default=str)))


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if not isinstance(value, dict):
        return value
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, (dict, list)):
            cleaned[key] = _masked(item)
            continue
        # The pair as redact sees it in a message, so the key can give a secret away.
        text = json.dumps({key: item})
        masked = redact(text)
        if masked == text:
            cleaned[key] = item
        else:
            try:
                cleaned[key] = json.loads(masked)[key]
            except (ValueError, KeyError):  # the mask replaced a number or the key itself
                cleaned[key] = MASK
    return cleaned


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
    """Owns a job's parts directory: what is finished, committing new parts, and, for a single-file
    output, joining the parts into that file when the job completes."""

    def __init__(
        self,
        plan: OutputPlan,
        *,
        job: dict[str, Any],
        resume: bool,
        overwrite: bool,
        errors_file: str | None = None,
    ) -> None:
        self.plan = plan
        self.path = plan.parts_dir
        self.fmt = plan.fmt
        self.job = job
        #: Where every part's rejected rows are joined when the job completes (``None``: not joined).
        self.errors_file = errors_file
        #: A single-file job that completed before: its file is written and its parts are gone.
        self.merged = False
        try:
            self._open(resume=resume, overwrite=overwrite)
        except OSError as exc:
            raise InvalidInputError(f"Cannot write the output {plan.path!r}: {exc}") from exc

    def _open(self, *, resume: bool, overwrite: bool) -> None:
        path, shown = self.path, self.plan.path
        final = shown if self.plan.single_file else None
        if os.path.exists(path) and not os.path.isdir(path):
            raise InvalidInputError(f"Output {path!r} exists and is not a directory of parts")
        manifest_path = os.path.join(path, MANIFEST)
        existing = self._read_manifest(manifest_path) if os.path.exists(manifest_path) else None
        if final is not None and existing is not None and existing.get("complete") and not os.path.isfile(final):
            existing = None  # the file this job made is gone; its records cannot bring it back
            shutil.rmtree(path)
        if final is not None and existing is None and os.path.exists(final) and not overwrite:
            raise ConflictError(
                f"Output file {final!r} exists and was not written by a deployflow job staged beside it; pass "
                "overwrite=True to replace it (it is replaced only once the new file is complete)"
            )
        if existing is not None and not overwrite:
            if not resume:
                raise ConflictError(
                    f"Output {shown!r} holds the parts of an earlier job; pass resume=True to continue it or "
                    "overwrite=True to start over"
                )
            if existing.get("job") != self.job:
                raise ConflictError(
                    f"Output {shown!r} was written by a job with other settings or input "
                    f"({_diff(existing.get('job', {}), self.job)}); refusing to resume. Pass overwrite=True to start over."
                )
            self.manifest = existing
            self.merged = final is not None and bool(existing.get("complete"))
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
            self.manifest = {"version": MANIFEST_VERSION, "job": self.job, "parts": {}, "complete": False}
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
                f"The input changed since part {index} of {self.plan.path!r} was written (its rows hash differently); "
                "refusing to resume. Pass overwrite=True to start over."
            )
        if not self.merged and not os.path.exists(os.path.join(self.path, entry["file"])):
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
        """Mark the job done; for a single-file output, first join the parts into the file (renamed into
        place whole), then delete them."""
        # Parts beyond the last one belong to a longer earlier input: they must not stay.
        for key in [k for k in self.parts if int(k) >= parts]:
            raise ConflictError(
                f"{self.plan.path!r} holds part {key} beyond the end of this input ({parts} parts): the input "
                "changed; pass overwrite=True to start over"
            )
        ordered = sorted(self.parts, key=int)
        if not self.merged:
            if self.errors_file is not None:
                error_parts = [os.path.join(self.path, ERRORS_DIR, f"part-{int(key):05d}.jsonl") for key in ordered]
                join_lines([f for f in error_parts if os.path.exists(f)], self.errors_file)
            if self.plan.single_file:
                files = [os.path.join(self.path, self.parts[key]["file"]) for key in ordered]
                merge_parts(files, self.fmt, self.plan.path, scratch=self.path)
        self.manifest["complete"] = True
        self.manifest["total_rows"] = total_rows
        self.manifest["parts"] = {key: self.parts[key] for key in ordered}
        self._save()
        if self.plan.single_file:
            self._drop_part_data()

    def _drop_part_data(self) -> None:
        """Delete what the joined file now holds; the manifest and records stay for reruns."""
        for name in os.listdir(self.path):
            if name.startswith(("part-", ".tmp-")):
                os.unlink(os.path.join(self.path, name))
        shutil.rmtree(os.path.join(self.path, ERRORS_DIR), ignore_errors=True)

    def errors_path(self) -> str:
        return self.errors_file if self.errors_file is not None else os.path.join(self.path, ERRORS_DIR)


def merge_parts(files: list[str], fmt: str, destination: str, scratch: str | None = None) -> None:
    """Join part files (in order, one at a time: memory follows the largest part) into ``destination``,
    written under a temporary name in ``scratch`` (default: beside it; it must be on the same file
    system) and renamed into place."""
    folder = scratch or os.path.dirname(destination) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    os.close(fd)
    try:
        if fmt == "parquet":
            _merge_parquet(files, tmp)
        elif fmt == "csv":
            _merge_csv(files, tmp)
        else:
            _merge_lines(files, tmp)
        os.replace(tmp, destination)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def join_lines(files: list[str], destination: str) -> None:
    """Join JSON-lines files into ``destination`` atomically (an empty file for none)."""
    folder = os.path.dirname(destination) or "."
    os.makedirs(folder, exist_ok=True)
    merge_parts(files, "jsonl", destination)


def _merge_parquet(files: list[str], tmp: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not files:
        pq.write_table(pa.table({}), tmp)
        return
    schemas = [pq.read_schema(f) for f in files]
    schema = schemas[0]
    if any(not s.equals(schema, check_metadata=False) for s in schemas[1:]):
        # Parts can differ: a column that is all null in one part, integers in one and floats in another.
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    with pq.ParquetWriter(tmp, schema) as writer:
        for path, own in zip(files, schemas):
            table = pq.read_table(path)
            if not own.equals(schema, check_metadata=False):
                columns = [
                    table[f.name].cast(f.type) if f.name in own.names else pa.nulls(len(table), f.type)
                    for f in schema
                ]
                table = pa.Table.from_arrays(columns, schema=schema)
            writer.write_table(table)


def _merge_csv(files: list[str], tmp: str) -> None:
    import csv

    headers = []
    for path in files:
        with open(path, "rb") as handle:
            headers.append(handle.readline())
    with open(tmp, "wb") as out:
        if not files:
            return
        if all(h == headers[0] for h in headers):
            # The common case: the same columns everywhere, so the parts' bytes are copied as they are.
            out.write(headers[0])
            for path in files:
                with open(path, "rb") as handle:
                    handle.readline()
                    shutil.copyfileobj(handle, out, 1 << 20)
            return
        import pandas as pd

        names: dict[str, None] = {}
        for header in headers:
            names.update(dict.fromkeys(next(csv.reader([header.decode()]), [])))
        columns = list(names)
        pd.DataFrame(columns=columns).to_csv(out, index=False)
        for path in files:
            pd.read_csv(path).reindex(columns=columns).to_csv(out, header=False, index=False)


def _merge_lines(files: list[str], tmp: str) -> None:
    with open(tmp, "wb") as out:
        ends_with_newline = True
        for path in files:
            with open(path, "rb") as handle:
                if not ends_with_newline:
                    out.write(b"\n")
                shutil.copyfileobj(handle, out, 1 << 20)
                if handle.tell():
                    handle.seek(-1, os.SEEK_END)
                    ends_with_newline = handle.read(1) == b"\n"


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "no difference"
