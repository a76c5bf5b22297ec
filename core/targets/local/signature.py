"""A model signature as MLflow writes it in an ``MLmodel`` file, read without MLflow.

MLflow stores ``signature`` as a mapping whose ``inputs``, ``outputs`` and ``params`` values are JSON
texts. :func:`parse_signature` turns the ``inputs`` and ``params`` parts into the immutable values below;
:mod:`.enforcement` checks requests against them.

* Column specs, ``{"type": "double", "name": "sl", "required": true}``: a table of named (or, when no
  spec has a name, positional) columns. The types understood are MLflow's scalar ones: ``boolean``,
  ``integer`` (int32), ``long`` (int64), ``float`` (float32), ``double`` (float64), ``string``,
  ``binary`` and ``datetime``.
* Tensor specs, ``{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}``, named or
  not: arrays of a numpy dtype and a shape where ``-1`` is a free dimension.
* Param specs, ``{"name": "k", "type": "long", "default": 3, "shape": null}``: named inference
  parameters of a scalar type, ``shape`` ``null`` (a scalar) or ``[-1]`` (a list).

MLflow also has nested column types (``array``, ``object``, ``map``, ``any``) and object params; a
signature using them raises :class:`UnsupportedSignatureError`, so the caller can hand the model to
MLflow itself instead of enforcing half of the signature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidInputError

__all__ = [
    "COLUMN_TYPES",
    "ColumnSpec",
    "ParamSpec",
    "Signature",
    "TensorSpec",
    "UnsupportedSignatureError",
    "parse_signature",
]

#: MLflow's scalar column types and the numpy dtype each stands for (``object`` for text and bytes).
COLUMN_TYPES: dict[str, str] = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "object",
    "binary": "object",
    "datetime": "datetime64[ns]",
}


class UnsupportedSignatureError(InvalidInputError):
    """The signature uses a part of MLflow's schema language that this reader does not enforce."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a column-based signature."""

    type: str
    name: str | None = None
    required: bool = True

    def describe(self) -> str:
        label = f"{self.name!r}: " if self.name is not None else ""
        return f"{label}{self.type} ({'required' if self.required else 'optional'})"


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a tensor-based signature: a numpy dtype name and a shape (``-1`` is free)."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None
    required: bool = True

    def describe(self) -> str:
        label = f"{self.name!r}: " if self.name is not None else ""
        return f"{label}tensor of {self.dtype} with shape {self.shape}"


@dataclass(frozen=True)
class ParamSpec:
    """One inference parameter: its type, default, and shape (``None`` scalar, ``(-1,)`` a list)."""

    name: str
    type: str
    default: Any = None
    shape: tuple[int, ...] | None = None

    def describe(self) -> str:
        kind = self.type if self.shape is None else f"list of {self.type}"
        return f"{self.name!r}: {kind} (default {self.default!r})"


@dataclass(frozen=True)
class Signature:
    """The input and params parts of a model signature (either may be absent)."""

    inputs: tuple[ColumnSpec | TensorSpec, ...] | None = None
    params: tuple[ParamSpec, ...] | None = None

    @property
    def is_tensor(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], TensorSpec)

    @property
    def has_names(self) -> bool:
        return bool(self.inputs) and all(spec.name is not None for spec in self.inputs)

    def describe_inputs(self) -> str:
        return "[" + ", ".join(spec.describe() for spec in self.inputs or ()) + "]"


def parse_signature(raw: Any) -> Signature | None:
    """The signature in an ``MLmodel`` mapping's ``signature`` value (``None`` when there is none).

    Raises :class:`UnsupportedSignatureError` for nested column types or object params, and
    :class:`~deployflow.errors.InvalidInputError` for a signature that is not well formed.
    """
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise InvalidInputError(f"the MLmodel signature must be a mapping, got {type(raw).__name__}")
    inputs = _parse_inputs(_json_part(raw, "inputs"))
    params = _parse_params(_json_part(raw, "params"))
    if inputs is None and params is None:
        return None
    return Signature(inputs=inputs, params=params)


def _json_part(raw: dict[str, Any], key: str) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str):  # how MLflow writes it: JSON text inside the YAML
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidInputError(f"the MLmodel signature's {key!r} is not valid JSON: {exc}") from exc
    return value


def _parse_inputs(specs: Any) -> tuple[ColumnSpec | TensorSpec, ...] | None:
    if specs is None:
        return None
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise InvalidInputError("the MLmodel signature's 'inputs' must be a list of specs")
    if not specs:
        return None
    parsed = tuple(_parse_input(spec) for spec in specs)
    if len({type(spec) for spec in parsed}) > 1:
        raise InvalidInputError("the MLmodel signature mixes column and tensor inputs")
    named = [spec.name is not None for spec in parsed]
    if any(named) and not all(named):
        raise InvalidInputError("the MLmodel signature names some inputs but not others")
    if isinstance(parsed[0], TensorSpec) and not any(named) and len(parsed) > 1:
        raise InvalidInputError("the MLmodel signature has several unnamed tensors")
    return parsed


def _parse_input(spec: dict[str, Any]) -> ColumnSpec | TensorSpec:
    kind = spec.get("type")
    name = spec.get("name")
    required = bool(spec.get("required", True))
    if kind == "tensor":
        tensor = spec.get("tensor-spec") or {}
        dtype = tensor.get("dtype")
        shape = tensor.get("shape")
        if not isinstance(dtype, str) or not isinstance(shape, list):
            raise InvalidInputError(f"the MLmodel signature has a tensor spec without dtype and shape: {spec}")
        return TensorSpec(dtype=_numpy_dtype_name(dtype), shape=tuple(int(size) for size in shape), name=name,
                          required=required)
    if kind in COLUMN_TYPES:
        return ColumnSpec(type=kind, name=name, required=required)
    raise UnsupportedSignatureError(
        f"the model signature has an input of type {kind!r}, which deployflow does not enforce itself "
        f"(it reads the column types {', '.join(COLUMN_TYPES)} and tensors)"
    )


def _numpy_dtype_name(name: str) -> str:
    import numpy as np

    try:
        return np.dtype(name).name if name != "object" else "object"
    except TypeError as exc:
        raise InvalidInputError(f"the MLmodel signature names an unknown tensor dtype {name!r}") from exc


def _parse_params(specs: Any) -> tuple[ParamSpec, ...] | None:
    if specs is None:
        return None
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise InvalidInputError("the MLmodel signature's 'params' must be a list of specs")
    parsed = []
    for spec in specs:
        kind = spec.get("type")
        name = spec.get("name")
        shape = spec.get("shape")
        if kind not in COLUMN_TYPES:
            raise UnsupportedSignatureError(
                f"the model signature has a param {name!r} of type {kind!r}, which deployflow does not "
                "enforce itself (it reads params of scalar types, alone or as lists)"
            )
        if shape is not None and list(shape) != [-1]:
            raise InvalidInputError(f"param {name!r} has shape {shape}; MLflow allows none or [-1]")
        if not isinstance(name, str):
            raise InvalidInputError(f"the MLmodel signature has a param without a name: {spec}")
        parsed.append(ParamSpec(name=name, type=kind, default=spec.get("default"),
                                shape=None if shape is None else (-1,)))
    return tuple(parsed) or None
