"""Special registers, compile-time loops, casts and selection."""

from __future__ import annotations

from ..errors import KaioError
from ..frontend.builder import Builder, PyConst
from ..frontend.describe import describe
from ..frontend.values import StaticRange, builtin
from ..ir.node import Node
from ..types import ScalarType, i32, u32


class _Dim3:
    """``thread_idx.x`` etc.: each field reads a PTX special register as an i32."""

    def __init__(self, reg: str, name: str, doc: str):
        self._reg = reg
        self._name = name
        self.__doc__ = doc

    def __kaio_describe__(self) -> str:
        return f"kaiodsl.{self._name} (read one field: .x, .y or .z)"

    def __kaio_getattr__(self, fx, name: str):
        if name not in ("x", "y", "z"):
            fx.error(f"kaiodsl.{self._name} has fields x, y, z; not '{name}'")
        if self._reg == "ntid" and fx.ctx.block:
            return fx.ctx.block["xyz".index(name)]  # block_size is fixed: a compile-time constant
        return fx.b.emit("special", i32, (), {"reg": f"{self._reg}.{name}"})

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise KaioError(f"kaiodsl.{self._name}.{name} can only be read inside a kernel")


thread_idx = _Dim3("tid", "thread_idx", "Index of the thread in its block (%tid).")
block_idx = _Dim3("ctaid", "block_idx", "Index of the block in the grid (%ctaid).")
block_dim = _Dim3("ntid", "block_dim", "Block size (%ntid); a constant when the kernel declares block_size.")
grid_dim = _Dim3("nctaid", "grid_dim", "Grid size in blocks (%nctaid).")


@builtin
def lane_id(b: Builder):
    """The thread's lane in its warp, 0..31 (%laneid)."""
    return b.emit("special", i32, (), {"reg": "laneid"})


@builtin
def warp_id(b: Builder):
    """The warp's index in its block: flat thread index // 32 (not %warpid, which is a hardware slot)."""
    tx = b.emit("special", i32, (), {"reg": "tid.x"})
    ty = b.emit("special", i32, (), {"reg": "tid.y"})
    tz = b.emit("special", i32, (), {"reg": "tid.z"})
    nx = b.emit("special", i32, (), {"reg": "ntid.x"})
    ny = b.emit("special", i32, (), {"reg": "ntid.y"})
    flat = b.binary("add", tx, b.binary("mul", nx, b.binary("add", ty, b.binary("mul", ny, tz))))
    return b.floordiv(flat, 32)


@builtin
def static_range(b: Builder, *args):
    """``for i in static_range(n)``: unrolled at compile time; ``i`` is a Python int in each copy."""
    if not 1 <= len(args) <= 3:
        b.error(f"static_range() takes 1 to 3 arguments, got {len(args)}")
    for a in args:
        if isinstance(a, Node) and a.op == "const":
            a = a.attrs["value"]
        if not isinstance(a, int) or isinstance(a, bool):
            what = describe(a)
            b.error(f"static_range() needs compile-time integer bounds, got {what}; "
                    f"use range() for a loop whose bounds are known only at run time")
    vals = [a.attrs["value"] if isinstance(a, Node) else a for a in args]
    if len(vals) == 3 and vals[2] == 0:
        b.error("static_range() step must not be zero")
    return StaticRange(range(*vals))


@builtin
def cast(b: Builder, x, dtype, rounding=None):
    """Convert ``x`` to ``dtype``. rounding: 'rn' (default for floats), 'rz', 'rm', 'rp'.

    Float -> int truncates toward zero unless a rounding is given; out-of-range values saturate
    and NaN becomes 0 (PTX cvt). Int -> narrower int wraps (keeps the low bits).
    """
    if not isinstance(dtype, ScalarType):
        b.error(f"cast(): dtype must be a kaiodsl scalar type, got {describe(dtype)}")
    if rounding not in (None, "rn", "rz", "rm", "rp"):
        b.error(f"cast(): rounding must be 'rn', 'rz', 'rm' or 'rp', got {describe(rounding)}")
    return b.convert(x, dtype, rounding)


@builtin
def saturate_cast(b: Builder, x, dtype):
    """Convert to an integer type, clamping to its range (cvt.sat); floats: NaN -> 0."""
    if not (isinstance(dtype, ScalarType) and dtype.is_int):
        b.error(f"saturate_cast(): dtype must be an integer type, got {describe(dtype)}")
    if isinstance(x, Node) and x.type.is_float:
        return b.convert(x, dtype)  # float -> int conversions always saturate
    return b.convert(x, dtype, "sat")


@builtin
def truncate_cast(b: Builder, x, dtype):
    """Convert to an integer type keeping the low bits (wrapping), or a float toward zero."""
    if not (isinstance(dtype, ScalarType) and dtype.is_int):
        b.error(f"truncate_cast(): dtype must be an integer type, got {describe(dtype)}")
    return b.convert(x, dtype, "rz" if isinstance(x, Node) and x.type.is_float else None)


@builtin
def bitcast(b: Builder, x, dtype):
    """Reinterpret the bits of ``x`` as ``dtype`` (same width)."""
    return b.bitcast(b.value(x), dtype)


@builtin
def where(b: Builder, cond, x, y):
    """``x`` where ``cond`` else ``y``, both evaluated (selp)."""
    return b.select(cond, x, y)


@builtin
def unsigned(b: Builder, x):
    """Reinterpret a signed integer as unsigned of the same width."""
    x = b.value(x)
    return b.bitcast(x, {8: ScalarType("u8", 8, "uint"), 16: ScalarType("u16", 16, "uint"),
                         32: u32, 64: ScalarType("u64", 64, "uint")}[x.type.bits])


def _is_py(v) -> bool:
    return isinstance(v, PyConst)
