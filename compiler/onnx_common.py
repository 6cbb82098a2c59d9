"""Helpers every front-end module shares (imports nothing else of the front end)."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from bamboo.runtime.elementwise import requant_table as _table

from . import ir
from .errors import MixedPrecisionError, UnsupportedOpError

__all__ = [
    "attrs",
    "elem_name",
    "label",
    "requant_table",
    "scalar_q",
    "Const",
    "QConst",
    "Codes",
    "Dequantized",
    "Pending",
    "FloatInput",
    "Refused",
]


# What an ONNX value is, as the walk meets it. ``kind`` names the class in messages.


@dataclass(frozen=True, eq=False)
class Const:
    """A folded constant."""

    value: object
    kind: ClassVar[str] = "const"


@dataclass(frozen=True, eq=False)
class QConst:
    """``DequantizeLinear`` of a constant: integer codes with their scale, zero point and
    axis (weights, bias)."""

    codes: np.ndarray
    scale: np.ndarray
    zp: np.ndarray
    axis: int
    kind: ClassVar[str] = "qconst"


@dataclass(frozen=True)
class Codes:
    """8-bit codes: the IR ``tensor`` (QuantizeLinear or QOperator outputs)."""

    tensor: str
    kind: ClassVar[str] = "q"


@dataclass(frozen=True)
class Dequantized:
    """The float view of IR ``tensor`` (a DequantizeLinear output)."""

    tensor: str
    kind: ClassVar[str] = "dq"


@dataclass(frozen=True)
class Pending:
    """The float result of compute ``node``, waiting for the QuantizeLinear that fixes its
    output scale; ``views``: element moves met on the way (applied to the codes)."""

    node: object
    views: tuple = ()
    kind: ClassVar[str] = "pending"


@dataclass(frozen=True)
class FloatInput:
    """A graph input waiting for its QuantizeLinear (or a QOperator reading it as codes)."""

    name: str
    shape: tuple
    elem: int
    kind: ClassVar[str] = "fin"


@dataclass(frozen=True)
class Refused:
    """The output of an unsupported ``node`` (already reported)."""

    node: object
    kind: ClassVar[str] = "bad"


def attrs(node):
    """A NodeProto's attributes as ``{name: python value}``."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def label(node):
    """How messages name ``node``: its name, else its op type."""
    return node.name or node.op_type


def elem_name(elem):
    """An ONNX element type's name (``FLOAT``), or a placeholder for an unknown one."""
    from onnx import TensorProto

    return (
        TensorProto.DataType.Name(elem)
        if elem in TensorProto.DataType.values()
        else f"<unknown type {elem}>"
    )


def scalar_q(scale, zp, where):
    """The :class:`~.ir.QType` of one activation scale and zero point; one clear error for
    per-axis, non-positive or non-8-bit parameters (``where`` names the node)."""
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.asarray(zp)
    if scale.size != 1 or zp.size != 1:
        raise UnsupportedOpError(
            f"{where}: activations need one scale per tensor, "
            f"not {scale.size}; quantize activations per tensor"
        )
    if not np.isfinite(scale).all() or (scale <= 0).any():
        raise UnsupportedOpError(
            f"{where}: scale {float(scale.reshape(-1)[0])!r} is not "
            f"positive and finite; re-quantize the model"
        )
    if zp.dtype not in (np.uint8, np.int8):
        raise MixedPrecisionError(
            f"{where}: activations are {zp.dtype}; Bamboo runs 8-bit codes only: quantize "
            f"with activation_type QUInt8 or QInt8"
        )
    return ir.QType(str(zp.dtype), float(scale.reshape(())), int(zp.reshape(())))


def requant_table(qi, qo):
    """Table of ``quantize(dequantize(code))`` from ``qi`` to ``qo`` (float32, as onnxruntime)."""
    if qi.dtype != qo.dtype:
        raise MixedPrecisionError(f"cannot requantize {qi.dtype} codes to {qo.dtype}")
    return _table(np.float32(qi.scale), qi.zp, np.float32(qo.scale), qo.zp, qi.np_dtype)
