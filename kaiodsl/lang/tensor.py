"""Tensor-core and async-copy primitives: mma.sync, ldmatrix/stmatrix, cp.async, packed conversions.

Fragments are register tuples whose element order is the PTX ISA's (9.7.14.5, "Matrix fragments for
mma.m16n8k*"); ``FragmentLayout`` gives the (row, col) each lane holds so kernels can index matrices.
Every instruction is a form in ptx_templates/instructions.txt, so the arch gate and .version are data.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..frontend.builder import Builder
from ..frontend.describe import describe
from ..frontend.values import SharedArray, builtin
from ..ir.node import Node
from ..types import (PtrType, ScalarType, TupleType, Type, bf16, bf16x2, e4m3, e5m2, f16, f16x2, f32, i8, i32,
                     u8, u16, u32)

# -- fragment layouts ---------------------------------------------------------------------------
# Bits per element of each mma operand type; a 32-bit register holds 32 // bits elements.
ELEM_BITS = {"f16": 16, "bf16": 16, "tf32": 32, "s8": 8, "u8": 8, "e4m3": 8, "e5m2": 8, "s4": 4, "u4": 4}
# (shape, a-type, b-type, accumulator) -> instruction form; the table lines live in instructions.txt.
_FP8 = ("e4m3", "e5m2")
_INT8 = ("s8", "u8")
_INT4 = ("s4", "u4")
MMA_FORMS = {
    **{(k, t, t, acc): f"mma.m16n8k{k}.{acc}.{t}" for k in (8, 16) for t in ("f16",) for acc in ("f32", "f16")},
    **{(k, "bf16", "bf16", "f32"): f"mma.m16n8k{k}.f32.bf16" for k in (8, 16)},
    **{(k, "tf32", "tf32", "f32"): f"mma.m16n8k{k}.f32.tf32" for k in (4, 8)},
    **{(k, a, b, "s32"): f"mma.m16n8k{k}.s32.{a}.{b}" for k in (16, 32) for a in _INT8 for b in _INT8},
    **{(k, a, b, "s32"): f"mma.m16n8k{k}.s32.{a}.{b}" for k in (32, 64) for a in _INT4 for b in _INT4},
    **{(32, a, b, "f32"): f"mma.m16n8k32.f32.{a}.{b}" for a in _FP8 for b in _FP8},
}


@dataclass(frozen=True)
class FragmentLayout:
    """Which (row, col) of its matrix each lane holds, for one mma operand (PTX ISA 9.7.14.5.x).

    role 'a' (16 x k, row-major), 'b' (k x 8) or 'c' (16 x 8, also D). Element ``i`` lives in
    register ``i // per_reg``, bits ``(i % per_reg) * bits`` upwards (the first element lowest).
    With g = lane >> 2 and t = lane % 4 every coordinate is affine: see ``affine``.
    """

    role: str
    dtype: str
    k: int

    @property
    def bits(self) -> int:
        return 32 if self.role == "c" and self.dtype in ("f32", "s32") else (
            16 if self.role == "c" else ELEM_BITS[self.dtype])

    @property
    def per_reg(self) -> int:
        return 32 // self.bits

    @property
    def elements(self) -> int:
        rows, cols = self.shape
        return rows * cols // 32

    @property
    def nregs(self) -> int:
        return self.elements // self.per_reg

    @property
    def shape(self) -> tuple:
        return {"a": (16, self.k), "b": (self.k, 8), "c": (16, 8)}[self.role]

    def affine(self, i: int) -> tuple:
        """((row_g, row_t, row_0), (col_g, col_t, col_0)): row = row_g*g + row_t*t + row_0, same for col."""
        if not 0 <= i < self.elements:
            raise IndexError(f"{self.role} fragment of {self.dtype} k={self.k} has {self.elements} elements, "
                             f"not {i + 1}")
        e = self.per_reg
        r, j = divmod(i, e)
        if self.role == "a":
            return (1, 0, 8 * (r & 1)), (0, e, (r >> 1) * 4 * e + j)
        if self.role == "b":
            return (0, e, r * 4 * e + j), (1, 0, 0)
        return (1, 0, 8 * (i >> 1)), (0, 2, i & 1)

    def coord(self, i: int, lane):
        """(row, col) of element i for ``lane`` (an int or a numpy array of lanes): host-side."""
        (rg, rt, r0), (cg, ct, c0) = self.affine(i)
        g, t = lane >> 2, lane & 3
        return rg * g + rt * t + r0, cg * g + ct * t + c0


def fragment_layout(role: str, dtype="f16", k: int = 16) -> FragmentLayout:
    """The layout of an mma operand: role 'a', 'b' or 'c'; dtype an mma type name or kaiodsl type."""
    if role not in ("a", "b", "c"):
        raise ValueError(f"fragment role must be 'a', 'b' or 'c', got {describe(role)}")
    name = _dtype_name(dtype) if role != "c" else {"f32": "f32", "f16": "f16", "s32": "s32", "i32": "s32"}.get(
        getattr(dtype, "name", dtype), None)
    if name is None:
        raise ValueError(f"no mma {role} fragment of {describe(dtype)}")
    return FragmentLayout(role, name, k)


def _dtype_name(d):
    """An mma element type name from a kaiodsl type or a string ('tf32', 's4', ...)."""
    alias = {i8: "s8", u8: "u8", f16: "f16", bf16: "bf16", e4m3: "e4m3", e5m2: "e5m2", f32: "tf32",
             f16x2: "f16", bf16x2: "bf16"}
    if isinstance(d, ScalarType):
        return alias.get(d)
    return d if d in ELEM_BITS else None


@builtin
def frag_coord(b: Builder, role, i, dtype="f16", k: int = 16, lane=None):
    """(row, col) as i32 values of element ``i`` of an mma fragment in this lane (``lane`` default lane_id())."""
    try:
        lay = fragment_layout(role, dtype, k)
        (rg, rt, r0), (cg, ct, c0) = lay.affine(i)
    except (ValueError, IndexError) as e:
        b.error(f"frag_coord(): {e}")
    if lane is None:
        lane = b.emit("special", i32, (), {"reg": "laneid"})
    if isinstance(lane, int):
        return lay.coord(i, lane)
    lane = b.convert(lane, i32) if isinstance(lane, Node) else b.coerce(lane, i32, "lane")
    g = b.shift("shr", lane, 2)
    t = b.binary("and", lane, 3)

    def affine(cg_, ct_, c0_):
        acc = c0_
        for coef, v in ((cg_, g), (ct_, t)):
            if coef:
                term = v if coef == 1 else b.binary("mul", v, coef)
                acc = term if isinstance(acc, int) and acc == 0 else b.binary("add", term, acc)
        return acc

    return affine(rg, rt, r0), affine(cg, ct, c0)


# -- mma.sync --------------------------------------------------------------------------------------
def _regs(b: Builder, frag, what: str) -> Node:
    """A fragment as one register tuple (Python tuples and lists of values are packed)."""
    if isinstance(frag, Node) and isinstance(frag.type, TupleType):
        return frag
    if isinstance(frag, Node):
        return b.make_tuple([frag])
    if isinstance(frag, (tuple, list)) and frag and all(isinstance(v, Node) for v in frag):
        return b.make_tuple(list(frag))
    b.error(f"mma(): {what} must be a register tuple (a fragment), got {describe(frag)}"[:200])


def _frag_elem_type(b: Builder, t: Node, what: str) -> ScalarType:
    types = set(t.type.elems)
    if len(types) != 1 or not all(x.bits == 32 for x in types):
        b.error(f"mma(): {what} must be 32-bit registers of one type, got {t.type}")
    return types.pop()


def _as_u32_regs(b: Builder, t: Node) -> Node:
    return b.make_tuple([b.bitcast(b.extract(t, i), u32) for i in range(len(t.type))])


_ACC_NAME = {"f32": "f32", "f16x2": "f16", "i32": "s32", "u32": "s32"}


@builtin
def mma(b: Builder, a, b_, c, *, dtype=None, shape=None, satfinite: bool = False):
    """``D = A @ B + C`` on a warp's tensor cores: mma.sync.aligned.m16n8kK.row.col (PTX ISA 9.7.14.5.14).

    a, b_, c are fragments (register tuples in the PTX ISA's element order; see frag_coord).
    The A/B element type comes from the registers: f16x2 -> f16, bf16x2 -> bf16, f32 -> tf32; for
    u32/i32 registers give ``dtype`` ('s8', 'u8', 'e4m3', 'e5m2', 's4', 'u4' or a pair (a, b) of them).
    K follows from the number of A registers; ``shape`` ('m16n8k16'...) checks it. The accumulator is
    4 x f32, 2 x f16x2 or 4 x i32; the result has the accumulator's type. satfinite: clamp s32 results.
    """
    A, B, C = _regs(b, a, "A"), _regs(b, b_, "B"), _regs(b, c, "C")
    at_reg = _frag_elem_type(b, A, "A")
    bt_reg = _frag_elem_type(b, B, "B")
    ct_reg = _frag_elem_type(b, C, "C")
    if dtype is None:
        an, bn = _dtype_name(at_reg), _dtype_name(bt_reg)
        if an is None or bn is None:
            b.error(f"mma(): A/B registers of type {at_reg}/{bt_reg} do not say the element type; "
                    f"pass dtype= one of 's8', 'u8', 'e4m3', 'e5m2', 's4', 'u4'")
    else:
        pair = dtype if isinstance(dtype, (tuple, list)) else (dtype, dtype)
        an, bn = (_dtype_name(x) for x in pair)
        if an is None or bn is None:
            b.error(f"mma(): unknown dtype {describe(dtype)}; use one of {', '.join(ELEM_BITS)}")
    acc = _ACC_NAME.get(ct_reg.name)
    if acc is None:
        b.error(f"mma(): the accumulator must be f32, f16x2 or i32 registers, got {C.type}")
    e = 32 // ELEM_BITS[an]
    k = 2 * e * len(A.type)
    if shape is not None and shape != f"m16n8k{k}":
        b.error(f"mma(): shape {describe(shape)} needs {int(shape.split('k')[-1]) // (2 * e) if 'k' in shape else '?'} "
                f"A registers of {an}; got {len(A.type)} (that is m16n8k{k})")
    name = MMA_FORMS.get((k, an, bn, acc))
    if name is None:
        have = sorted({f"m16n8k{kk} {aa}x{bb}->{cc}" for (kk, aa, bb, cc) in MMA_FORMS if aa == an})
        b.error(f"mma(): no mma.sync m16n8k{k} for {an} x {bn} -> {acc}; available for {an}: {', '.join(have)}")
    lay_b, lay_c = FragmentLayout("b", bn, k), FragmentLayout("c", acc, k)
    if len(B.type) != lay_b.nregs or len(C.type) != lay_c.nregs:
        b.error(f"mma(): m16n8k{k} {an} needs {lay_b.nregs} B and {lay_c.nregs} C registers, "
                f"got {len(B.type)} and {len(C.type)}")
    # tf32 operands must be .b32 registers (ptxas rejects .f32 ones): move f32 fragments into u32
    A, B = (_as_u32_regs(b, t) if t.type.elems[0] == f32 else t for t in (A, B))
    if satfinite:
        if acc != "s32":
            b.error("mma(): satfinite applies to integer (s32) accumulation only")
        name += ".satfinite"
    return b.emit("inst_pure", C.type, (A, B, C), {"form": name})


@builtin
def mma_zeros(b: Builder, acc=f32):
    """A zero accumulator fragment: acc f32 (4 x f32), f16 (2 x f16x2) or i32 (4 x i32)."""
    if acc in (f32, "f32"):
        z = b.const(f32, 0.0)
        return b.make_tuple([z] * 4)
    if acc in (f16, f16x2, "f16"):
        z = b.bitcast(b.const(u32, 0), f16x2)
        return b.make_tuple([z] * 2)
    if acc in (i32, "s32", "i32"):
        z = b.const(i32, 0)
        return b.make_tuple([z] * 4)
    b.error(f"mma_zeros(): acc must be f32, f16 or i32, got {describe(acc)}")


@builtin
def frag_elements(b: Builder, frag):
    """A fragment's elements in order, as a list: packed f16x2/bf16x2 registers split into their
    halves (low half first), other 32-bit registers as they are."""
    t = _regs(b, frag, "frag_elements() argument")
    out = []
    for i, et in enumerate(t.type.elems):
        v = b.extract(t, i)
        if et in (f16x2, bf16x2):
            half = f16 if et == f16x2 else bf16
            pair = b.emit("inst_pure", TupleType((half, half)), (v,), {"form": "unpack.b32"})
            out += [b.extract(pair, 0), b.extract(pair, 1)]
        else:
            out.append(v)
    return out


# -- ldmatrix / stmatrix -----------------------------------------------------------------------------
def _shared_ptr(b: Builder, p, what: str) -> Node:
    if isinstance(p, SharedArray):
        p = p.base
    if not (isinstance(p, Node) and isinstance(p.type, PtrType) and p.type.space == "shared"):
        b.error(f"{what}(): the address must be a shared pointer (e.g. tile.ptr(row, col)), got {describe(p)}"[:200])
    return p


def _b16_reg_type(elem: ScalarType, dtype) -> ScalarType:
    if dtype is not None:
        return dtype
    return {"f16": f16x2, "bf16": bf16x2}.get(elem.name, u32)


@builtin
def ldmatrix(b: Builder, ptr, x: int = 4, trans: bool = False, dtype=None):
    """ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 (PTX ISA 9.7.9.26, sm_75+).

    Every lane gives ``ptr``: lanes 8i..8i+7 the 16-byte rows of matrix i. Returns ``x`` registers
    (one value for x=1): f16x2/bf16x2 for f16/bf16 pointers, else u32 (``dtype`` overrides).
    Lane l receives row l // 4, columns 2(l % 4), +1 of each matrix (transposed with ``trans``).
    """
    if x not in (1, 2, 4):
        b.error(f"ldmatrix(): x must be 1, 2 or 4, got {x}")
    p = _shared_ptr(b, ptr, "ldmatrix")
    rt = _b16_reg_type(p.type.elem, dtype)
    form = f"ldmatrix.x{x}{'.trans' if trans else ''}"
    if x == 1:
        return b.emit("inst_read", rt, (p,), {"form": form})
    return b.emit("inst_read", TupleType((rt,) * x), (p,), {"form": form})


@builtin
def stmatrix(b: Builder, ptr, regs, trans: bool = False):
    """stmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 (PTX ISA 9.7.9.27, sm_90+): the inverse of ldmatrix."""
    p = _shared_ptr(b, ptr, "stmatrix")
    if isinstance(regs, Node) and not isinstance(regs.type, TupleType):
        regs = [regs]
    r = _regs(b, regs, "stmatrix registers")
    if len(r.type) not in (1, 2, 4) or any(t.bits != 32 for t in r.type.elems):
        b.error(f"stmatrix(): give 1, 2 or 4 32-bit registers, got {r.type}")
    x = len(r.type)
    form = f"stmatrix.x{x}{'.trans' if trans else ''}"
    if x == 1:
        r = b.extract(r, 0)
    b.emit("inst", operands=(p, r), attrs={"form": form})


# -- cp.async ---------------------------------------------------------------------------------------
@builtin
def cp_async(b: Builder, dst, src, size: int = 16, src_size=None, mask=None, cache=None):
    """Copy ``size`` (4, 8, 16) bytes global -> shared without registers: cp.async (PTX ISA 9.7.9.25, sm_80+).

    dst: a shared pointer, src: a global pointer, both ``size``-aligned. src_size (bytes, run-time ok)
    reads only that many and zero-fills the rest; mask=False reads nothing and writes zeros (ragged
    tiles). cache 'ca' (L1+L2) or 'cg' (L2 only; 16 bytes only); default cg for 16 bytes, else ca.
    The copy lands at the cp_async_wait that completes its group.
    """
    d = _shared_ptr(b, dst, "cp_async")
    if isinstance(src, SharedArray) or not (isinstance(src, Node) and isinstance(src.type, PtrType)
                                             and src.type.space == "global"):
        b.error("cp_async(): src must be a global pointer")
    if size not in (4, 8, 16):
        b.error(f"cp_async(): size must be 4, 8 or 16 bytes, got {describe(size)}")
    cache = cache or ("cg" if size == 16 else "ca")
    if cache not in ("ca", "cg"):
        b.error(f"cp_async(): cache must be 'ca' or 'cg', got {describe(cache)}")
    if cache == "cg" and size != 16:
        b.error("cp_async(): cache='cg' copies 16 bytes only (PTX ISA cp.async)")
    if mask is not None:
        m = b.truth(mask)
        if src_size is None:
            src_size = size
        if isinstance(m, bool):
            src_size = src_size if m else 0
        else:
            src_size = b.select(m, b.convert(src_size, u32) if isinstance(src_size, Node) else
                                b.const(u32, src_size), b.const(u32, 0))
    if src_size is None:
        b.emit("inst", operands=(d, src), attrs={"form": f"cp.async.{cache}", "size": size})
        return
    if isinstance(src_size, int) and not 0 <= src_size <= size:
        b.error(f"cp_async(): src_size {src_size} is outside 0..{size}")
    n = b.convert(src_size, u32) if isinstance(src_size, Node) else b.const(u32, src_size)
    b.emit("inst", operands=(d, src, n), attrs={"form": f"cp.async.{cache}.zfill", "size": size})


@builtin
def cp_async_commit(b: Builder):
    """Close the group of this thread's cp.async copies issued since the last commit."""
    b.emit("inst", attrs={"form": "cp.async.commit_group"})


@builtin
def cp_async_wait(b: Builder, n: int = 0):
    """Wait until at most ``n`` (a compile-time int) of this thread's newest committed groups are pending."""
    if not (isinstance(n, int) and 0 <= n <= 7):
        b.error(f"cp_async_wait(): n must be a compile-time int 0..7, got {describe(n)}")
    b.emit("inst", attrs={"form": "cp.async.wait_group", "n": n})


@builtin
def cp_async_wait_all(b: Builder):
    """Commit the pending copies and wait for all of them (cp.async.wait_all)."""
    b.emit("inst", attrs={"form": "cp.async.wait_all"})


# -- packed conversions and bit moves ---------------------------------------------------------------
@builtin
def pack_half2(b: Builder, lo, hi, dtype=f16x2):
    """Two values -> one f16x2/bf16x2 register, ``lo`` in the low half (element 0 of a fragment pair).

    f32 inputs are rounded to nearest (one cvt.rn.f16x2.f32); f16/bf16 inputs are moved as they are.
    """
    if dtype not in (f16x2, bf16x2):
        b.error(f"pack_half2(): dtype must be f16x2 or bf16x2, got {describe(dtype)}")
    half = f16 if dtype == f16x2 else bf16
    lo, hi = b.value(lo), b.value(hi)
    if lo.type == half and hi.type == half:
        return b.emit("inst_pure", dtype, (lo, hi), {"form": "pack.b32"})
    lo, hi = b.convert(lo, f32), b.convert(hi, f32)
    return b.emit("inst_pure", dtype, (lo, hi), {"form": f"cvt.rn.{dtype.name}.f32"})


@builtin
def unpack_half2(b: Builder, x, as_f32: bool = True):
    """One f16x2/bf16x2 register -> (lo, hi), converted to f32 (exactly) unless ``as_f32`` is False."""
    x = b.value(x)
    if x.type not in (f16x2, bf16x2):
        b.error(f"unpack_half2(): needs an f16x2 or bf16x2 value, got {x.type}")
    half = f16 if x.type == f16x2 else bf16
    pair = b.emit("inst_pure", TupleType((half, half)), (x,), {"form": "unpack.b32"})
    lo, hi = b.extract(pair, 0), b.extract(pair, 1)
    return (b.convert(lo, f32), b.convert(hi, f32)) if as_f32 else (lo, hi)


def _u32(b: Builder, v, what: str) -> Node:
    if isinstance(v, Node):
        if not (isinstance(v.type, ScalarType) and v.type.bits == 32):
            b.error(f"{what} must be a 32-bit value, got {v.type}")
        return b.bitcast(v, u32)
    if isinstance(v, int) and not isinstance(v, bool):
        return b.const(u32, v & 0xFFFFFFFF)
    b.error(f"{what} must be a 32-bit value, got {describe(v)}")


@builtin
def pack_b32(b: Builder, lo, hi):
    """Two 16-bit values (any 16-bit type) -> u32 with ``lo`` in bits 0-15 (mov.b32 {lo, hi})."""
    vals = []
    for v in (lo, hi):
        v = b.coerce(v, u16, "pack_b32 half") if not isinstance(v, Node) else v
        if not (isinstance(v.type, ScalarType) and v.type.bits == 16):
            b.error(f"pack_b32(): halves must be 16-bit values, got {v.type}")
        vals.append(v)
    return b.emit("inst_pure", u32, tuple(vals), {"form": "pack.b32"})


@builtin
def unpack_b32(b: Builder, x):
    """A 32-bit value -> (lo, hi) as u16."""
    x = _u32(b, x, "unpack_b32()")
    pair = b.emit("inst_pure", TupleType((u16, u16)), (x,), {"form": "unpack.b32"})
    return b.extract(pair, 0), b.extract(pair, 1)


_PRMT_MODES = ("", "f4e", "b4e", "rc8", "ecl", "ecr", "rc16")


@builtin
def prmt(b: Builder, a, b_, selector, mode: str = ""):
    """Byte permute (PTX ISA 9.7.8.7 prmt.b32): result byte i = byte ``selector[4i+2:4i]`` of {b_, a}
    (bytes 0-3 from a, 4-7 from b_; bit 3 of a nibble replicates the byte's sign). mode: f4e b4e rc8 ecl ecr rc16."""
    if mode not in _PRMT_MODES:
        b.error(f"prmt(): mode must be one of {_PRMT_MODES[1:]}, got {describe(mode)}")
    ops = (_u32(b, a, "prmt() a"), _u32(b, b_, "prmt() b"), _u32(b, selector, "prmt() selector"))
    return b.emit("inst_pure", u32, ops, {"form": "prmt.b32", "mode": f".{mode}" if mode else ""})


def lop3_lut(fn) -> int:
    """The immLut of lop3 for ``fn(a, b, c)`` (a callable or an expression string in a, b, c):
    evaluated on the magic operands 0xF0, 0xCC, 0xAA (PTX ISA 9.7.8.6)."""
    if isinstance(fn, int) and not isinstance(fn, bool):
        lut = fn
    elif isinstance(fn, str):
        lut = eval(fn, {"__builtins__": {}}, {"a": 0xF0, "b": 0xCC, "c": 0xAA})  # noqa: S307 - compile time
    elif callable(fn):
        lut = fn(0xF0, 0xCC, 0xAA)
    else:
        raise ValueError(f"lop3 needs an int LUT, a function or an expression string, got {describe(fn)}")
    return int(lut) & 0xFF


@builtin
def lop3(b: Builder, a, b_, c, lut):
    """Any 3-input bitwise function in one instruction (lop3.b32). ``lut``: an int 0..255, an expression
    string like ``"(a & b) ^ ~c"``, or a function of (a, b, c) defined outside the kernel."""
    if isinstance(lut, (Type, Node)) or hasattr(lut, "__kaio_call__"):  # kaiodsl objects are not LUT functions
        b.error(f"lop3(): lut must be an int 0..255, an expression string or a Python function of (a, b, c), "
                f"got {describe(lut)}")
    try:
        imm = lop3_lut(lut)
    except Exception as e:  # the user's expression failed: show Python's complaint
        b.error(f"lop3(): cannot compute the LUT from {describe(lut)}: {e}")
    ops = [_u32(b, v, f"lop3() operand {n}") for n, v in zip("abc", (a, b_, c))]
    return b.emit("inst_pure", u32, tuple(ops), {"form": "lop3.b32", "lut": imm})


@builtin
def to_tf32(b: Builder, x):
    """Round an f32 to tf32 (cvt.rna.tf32.f32, sm_80+); the result is an f32 with 13 low bits zero."""
    x = b.convert(b.value(x), f32)
    return b.bitcast(b.emit("inst_pure", u32, (x,), {"form": "cvt.rna.tf32.f32"}), f32)


@builtin
def pack_fp8x2(b: Builder, lo, hi, dtype=e4m3):
    """Two f32 -> two e4m3/e5m2 bytes in a u16 (lo in bits 0-7), rounded, saturating to finite (sm_89+)."""
    if dtype not in (e4m3, e5m2):
        b.error(f"pack_fp8x2(): dtype must be e4m3 or e5m2, got {describe(dtype)}")
    lo, hi = b.convert(b.value(lo), f32), b.convert(b.value(hi), f32)
    return b.emit("inst_pure", u16, (lo, hi), {"form": f"cvt.rn.satfinite.{dtype.name}x2.f32"})
