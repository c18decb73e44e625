"""The kaiodsl type system: scalars, packed pairs, pointers, register tuples, Const.

Types are small frozen values; everything PTX-specific about them (suffixes,
register classes) is data in the tables below, used by codegen and the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class Type:
    """Base of all IR types."""

    def __repr__(self) -> str:  # pragma: no cover - dataclasses override
        return str(self)


@dataclass(frozen=True, repr=False)
class ScalarType(Type):
    """A value that lives in one PTX register.

    kind: 'int' (signed), 'uint', 'float', 'bool', 'packed' (two halves in 32 bits).
    """

    name: str
    bits: int
    kind: str

    def __str__(self) -> str:
        return self.name

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind == "int"

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"

    @property
    def nbytes(self) -> int:
        return max(1, self.bits // 8)

    @property
    def int_range(self) -> tuple[int, int]:
        """(lowest, highest) value of an integer type."""
        if self.is_signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    @property
    def np_dtype(self) -> np.dtype:
        """numpy dtype holding values of this type (bf16 and packed pairs as raw bits)."""
        return np.dtype(NUMPY_NAMES[self.name])

    # Calling a type converts: kaiodsl.f16(x) inside a kernel (handled by the
    # frontend); outside a kernel it makes a typed constant for tests and hosts.
    def __call__(self, value):
        from .frontend.values import typed_constant  # local: avoids an import cycle

        return typed_constant(self, value)


@dataclass(frozen=True, repr=False)
class PtrType(Type):
    """A pointer into a state space: 'global' (64-bit), 'shared' (32-bit), 'local'."""

    elem: Type
    space: str = "global"

    def __str__(self) -> str:
        return f"Ptr[{self.elem}]" if self.space == "global" else f"Ptr[{self.elem}, {self.space}]"

    @property
    def bits(self) -> int:
        return 32 if self.space == "shared" else 64


@dataclass(frozen=True, repr=False)
class TupleType(Type):
    """A register tuple: mma/ldmatrix fragments, vector loads. One SSA value, several registers."""

    elems: tuple

    def __str__(self) -> str:
        return "(" + ", ".join(str(e) for e in self.elems) + ")"

    def __len__(self) -> int:
        return len(self.elems)


@dataclass(frozen=True, repr=False)
class TensorMapType(Type):
    """A 128-byte CUtensorMap passed by value (``.param .align 64 .b8 [128]``, grid-constant):
    in the kernel, the value is the parameter's generic address (cp.async.bulk.tensor's tensorMap)."""

    name = "tensormap"
    size = 128
    align = 64
    bits = 64

    def __str__(self) -> str:
        return "TensorMap"


tensormap = TensorMapType()


@dataclass(frozen=True, repr=False)
class VoidType(Type):
    def __str__(self) -> str:
        return "void"


void = VoidType()

i8 = ScalarType("i8", 8, "int")
u8 = ScalarType("u8", 8, "uint")
i16 = ScalarType("i16", 16, "int")
u16 = ScalarType("u16", 16, "uint")
i32 = ScalarType("i32", 32, "int")
u32 = ScalarType("u32", 32, "uint")
i64 = ScalarType("i64", 64, "int")
u64 = ScalarType("u64", 64, "uint")
f16 = ScalarType("f16", 16, "float")
bf16 = ScalarType("bf16", 16, "float")
f32 = ScalarType("f32", 32, "float")
f64 = ScalarType("f64", 64, "float")
bool_ = ScalarType("bool", 1, "bool")
# Two halves packed in one 32-bit register (PTX .f16x2 / .bf16x2).
f16x2 = ScalarType("f16x2", 32, "packed")
bf16x2 = ScalarType("bf16x2", 32, "packed")
# 8-bit floats (sm_89+): storage and mma operands only.
e4m3 = ScalarType("e4m3", 8, "float")
e5m2 = ScalarType("e5m2", 8, "float")

SCALARS = {t.name: t for t in (i8, u8, i16, u16, i32, u32, i64, u64, f16, bf16, f32, f64, bool_,
                                f16x2, bf16x2, e4m3, e5m2)}

NUMPY_NAMES = {
    "i8": "int8", "u8": "uint8", "i16": "int16", "u16": "uint16", "i32": "int32", "u32": "uint32",
    "i64": "int64", "u64": "uint64", "f16": "float16", "bf16": "uint16", "f32": "float32",
    "f64": "float64", "bool": "bool", "f16x2": "uint32", "bf16x2": "uint32", "e4m3": "uint8",
    "e5m2": "uint8",
}

# numpy dtype name -> kaiodsl scalar (bf16 has no numpy dtype; see runtime for its handling).
FROM_NUMPY = {
    "int8": i8, "uint8": u8, "int16": i16, "uint16": u16, "int32": i32, "uint32": u32,
    "int64": i64, "uint64": u64, "float16": f16, "float32": f32, "float64": f64, "bool": bool_,
}


def bf16_bits(x) -> np.ndarray:
    """f32 -> bf16 raw bits (uint16), rounded to nearest even: the one implementation kaiodsl uses.

    Same shape as ``x`` (a scalar gives a 0-d array). NaN becomes the canonical 0x7FFF, as
    ``cvt.rn.bf16.f32`` does (PTX ISA 9.7.9.21), so host and device conversions agree bit for bit.
    """
    f = np.asarray(x, np.float32)
    b = f.view(np.uint32).astype(np.uint64)
    r = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return np.where(np.isnan(f), 0x7FFF, r).astype(np.uint16)


def nan_to_int(src: str, bits: int, signed: bool) -> int:
    """What cvt.*i.<int>.<src> gives for NaN on the GPU (H200, measured; the PTX ISA 9.7.9.21 says 0).

    An f64 source, or a 64-bit destination, gives the lone top bit (0x80, 0x8000, 0x80000000,
    0x8000000000000000: the minimum of a signed type, 2^(bits-1) of an unsigned one); f16/bf16/f32
    into 8/16/32-bit integers give 0. The one rule kaiodsl uses (simulator and constant folding).
    """
    if src != "f64" and bits < 64:
        return 0
    return -(1 << (bits - 1)) if signed else 1 << (bits - 1)


def ptx_suffix(t: Type) -> str:
    """Typed instruction suffix: .s32, .u64, .f32, .pred ..."""
    if isinstance(t, PtrType):
        return f".u{t.bits}"
    return _SUFFIX[t.name]


def bit_suffix(t: Type) -> str:
    """Untyped bit suffix of the same width: .b16, .b32, .b64."""
    bits = t.bits
    return ".pred" if bits == 1 else f".b{max(bits, 8)}"


_SUFFIX = {
    "i8": ".s8", "u8": ".u8", "i16": ".s16", "u16": ".u16", "i32": ".s32", "u32": ".u32",
    "i64": ".s64", "u64": ".u64", "f16": ".f16", "bf16": ".bf16", "f32": ".f32", "f64": ".f64",
    "bool": ".pred", "f16x2": ".f16x2", "bf16x2": ".bf16x2", "e4m3": ".e4m3", "e5m2": ".e5m2",
}

# Register class per type: (PTX declaration type, register name prefix).
# 8-bit values live in 16-bit registers, as PTX requires.
REG_CLASS = {
    "bool": (".pred", "%p"),
    "i8": (".b16", "%rs"), "u8": (".b16", "%rs"), "i16": (".b16", "%rs"), "u16": (".b16", "%rs"),
    "e4m3": (".b16", "%rs"), "e5m2": (".b16", "%rs"),
    "f16": (".b16", "%h"), "bf16": (".b16", "%h"),
    "i32": (".b32", "%r"), "u32": (".b32", "%r"), "f16x2": (".b32", "%hh"), "bf16x2": (".b32", "%hh"),
    "i64": (".b64", "%rd"), "u64": (".b64", "%rd"),
    "f32": (".f32", "%f"), "f64": (".f64", "%fd"),
}


def reg_class(t: Type) -> tuple[str, str]:
    if isinstance(t, TensorMapType):
        return (".b64", "%rd")
    if isinstance(t, PtrType):
        return (".b32", "%r") if t.bits == 32 else (".b64", "%rd")
    return REG_CLASS[t.name]


@dataclass(frozen=True)
class InvalidType:
    """A ``Ptr[...]`` that is not a type (``Ptr[Ptr[f32]]``): the frontend reports it as a CompileError
    where it is used (a parameter's annotation, a @func argument, a kernel expression)."""

    text: str
    reason: str

    def __repr__(self) -> str:
        return f"{self.text} ({self.reason})"


class _PtrFactory:
    """``Ptr[f32]`` (global) or ``Ptr[f32, "shared"]``."""

    def __getitem__(self, item) -> PtrType | InvalidType:
        elem, space = item if isinstance(item, tuple) and len(item) == 2 else (item, "global")
        text = f"Ptr[{', '.join(map(repr, item)) if isinstance(item, tuple) else item}]"
        if isinstance(elem, PtrType):
            return InvalidType(text, "a pointer's element must be a scalar type; pass a table of addresses "
                                     "as Ptr[u64] and turn each into a pointer with kaiodsl.ptr_cast")
        if not isinstance(elem, ScalarType) or isinstance(item, tuple) and len(item) != 2:
            return InvalidType(text, "write Ptr[T] with a kaiodsl scalar type T (i8 ... u64, f16, bf16, f32, "
                                     "f64, bool), optionally Ptr[T, 'shared'] or Ptr[T, 'local']")
        if space not in ("global", "shared", "local"):
            return InvalidType(text, f"the memory space must be 'global' (the default), 'shared' or 'local', "
                                     f"got {space!r}")
        return PtrType(elem, space)


Ptr = _PtrFactory()


@dataclass(frozen=True, repr=False)
class ConstType(Type):
    """``Const[int]`` / ``Const[i32]`` / ``Const`` (any Python value): a compile-time parameter."""

    inner: Any = None

    def __str__(self) -> str:
        return f"Const[{getattr(self.inner, '__name__', self.inner)}]" if self.inner is not None else "Const"


class _ConstFactory(ConstType):
    def __getitem__(self, item) -> ConstType:
        return ConstType(item)


Const = _ConstFactory()


def promote(a: ScalarType, b: ScalarType) -> ScalarType | None:
    """The common type of two typed scalars, or None when a cast must be written.

    Rules (documented in docs/language.md):
      * same type -> that type;
      * two floats -> the wider (f16 with bf16 -> f32);
      * int with float -> the float;
      * two ints of the same signedness -> the wider;
      * signed with unsigned -> the signed type if it is strictly wider, else None;
      * bool and packed types never promote.
    """
    if a == b:
        return a
    if a.kind in ("bool", "packed") or b.kind in ("bool", "packed"):
        return None
    if a.is_float and b.is_float:
        if a.bits == b.bits:  # f16 vs bf16
            return f32
        return a if a.bits > b.bits else b
    if a.is_float:
        return a
    if b.is_float:
        return b
    if a.kind == b.kind:
        return a if a.bits > b.bits else b
    s, u = (a, b) if a.is_signed else (b, a)
    return s if s.bits > u.bits else None
