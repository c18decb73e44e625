"""Warpgroup tensor cores (PTX ISA 9.7.15 wgmma, sm_90a only): descriptors, mma_async, fence/commit/wait.

A warpgroup is 4 consecutive warps (128 threads). ``wgmma`` returns the accumulator as a pending
value: until ``wgmma_wait`` hands it back, the only things that may touch it are further wgmmas of
the same shape (a CompileError names any other use). The accumulator layout is the PTX ISA's
"wgmma D fragment" (9.7.15.5.1): see ``wgmma_coord``.
"""

from __future__ import annotations

from ..codegen.features import forms
from ..frontend.builder import Builder
from ..frontend.describe import describe
from ..frontend.values import SharedArray, builtin
from ..ir.node import Node
from ..types import (PtrType, ScalarType, TupleType, bf16, bf16x2, bool_, e4m3, e5m2, f16, f16x2, f32,
                     i8, i32, u8, u32, u64)

# bits 62-63 of a matrix descriptor (PTX ISA 9.7.15.5.1 "Matrix Descriptor Format")
SWIZZLE_MODE = {0: 0, 128: 1, 64: 2, 32: 3}
MAJORS = ("k", "mn")
_K_BYTES = 32  # every wgmma shape reads 32 bytes of K per row (k16 x 2B, k8 x 4B, k32 x 1B)
_ELEM = {"f16": 16, "bf16": 16, "tf32": 32, "e4m3": 8, "e5m2": 8, "s8": 8, "u8": 8}
_ALIAS = {f16: "f16", bf16: "bf16", f32: "tf32", e4m3: "e4m3", e5m2: "e5m2", i8: "s8", u8: "u8",
          f16x2: "f16", bf16x2: "bf16"}


def descriptor_fields(swizzle: int, rows: int | None = None, row_bytes: int | None = None,
                      lbo: int | None = None, sbo: int | None = None, base_offset: int = 0,
                      major: str = "k") -> int:
    """The constant bits of a shared-memory matrix descriptor (everything but the address).

    Both majors use one storage scheme, the one a TMA load of W-byte-wide boxes produces: the tile is
    stored as column blocks W bytes wide (W = 16 without swizzle, else the swizzle width), side by
    side, each block ``rows`` rows of W contiguous bytes (then swizzled: 16-byte chunk bits [4, 4 +
    log2(W/16)) of the address XOR bits [7, ...)). The two majors differ in what a row is:

    - ``major="k"`` (K-major, imm-trans = 0): a row is one M/N index, a block holds W bytes of K, so
      ``rows`` is the tile's M or N extent. SBO = 8 W (the next 8 M/N rows); LBO = rows x W (the next
      16 bytes of K, only without swizzle: swizzled K-major ignores LBO).
    - ``major="mn"`` (MN-major, imm-trans = 1, f16/bf16 only): a row is one K index, a block holds W
      bytes (W/2 elements) of M/N, so ``rows`` is the tile's K extent (BK), and a [K, N] row-major
      matrix loaded by TMA boxes of (BK, W/2) elements lands in this layout box after box. Swizzled:
      LBO = rows x W (the next block of W/2 M/N indices), SBO = 8 W (the next 8 K rows). Without
      swizzle the roles swap: LBO = 8 x 16 = 128 (the next 8 K rows), SBO = rows x 16 (the next 8
      M/N indices). A k16 step is 16 rows: add 16 W bytes to the start address.

    Sources: PTX ISA 9.7.15.5.1.2 "Shared Memory Matrix Layout", Table 38 (the MN-major swizzle atom
    is (W/16) x 8 128-bit elements, M/N by K); the leading-dimension table as the PTX ISA gives it for
    tcgen05 (9.7.16.3.1.1, same descriptor fields): MN-major LBO is, without swizzle, "the stride from
    the first 8 columns to the next 8 columns" (8 K) and, swizzled, "from the first (swizzle-byte-size
    /16) rows to the next" (W bytes of M/N); SBO is the other stride of each layout, as in CuTe's
    canonical GMMA layouts (make_gmma_desc<Major::MN>). Give ``lbo``/``sbo`` to override.
    """
    if swizzle not in SWIZZLE_MODE:
        raise ValueError(f"swizzle must be 0 (none), 32, 64 or 128 bytes, got {describe(swizzle)}")
    if major not in MAJORS:
        raise ValueError(f"major must be 'k' (K-major) or 'mn' (MN-major, with trans_a/trans_b), "
                         f"got {describe(major)}")
    w = swizzle or 16
    if row_bytes is not None and row_bytes != w:
        raise ValueError(f"row_bytes={row_bytes} must be {w} for swizzle={swizzle} (one column block per row)")
    if rows is not None and (not isinstance(rows, int) or rows <= 0 or rows % 8):
        raise ValueError(f"rows={describe(rows)} must be a positive multiple of 8 (whole core matrices)")
    if major == "k":
        if sbo is None:
            sbo = 8 * w
        if lbo is None:
            if swizzle:
                lbo = 16  # not used by swizzled K-major layouts; any encodable value
            elif rows is None:
                raise ValueError("swizzle=0 needs rows= (LBO is the byte size of one 16-byte-wide column block)")
            else:
                lbo = rows * w
    else:
        block = None if rows is None else rows * w  # bytes of one column block: the M/N-direction step
        k8, mn = ("sbo", "lbo") if swizzle else ("lbo", "sbo")  # which field steps 8 K rows / the next block
        if block is None and (lbo if mn == "lbo" else sbo) is None:
            raise ValueError(f"major='mn' needs rows= (the tile's K rows: {mn.upper()} is the byte size of "
                             f"one {w}-byte-wide column block) or an explicit {mn}=")
        steps = {k8: 8 * w, mn: block}
        lbo = steps["lbo"] if lbo is None else lbo
        sbo = steps["sbo"] if sbo is None else sbo
    for name, v in (("lbo", lbo), ("sbo", sbo)):
        if v % 16 or not 0 <= v >> 4 < 2**14:
            raise ValueError(f"{name}={v} must be a multiple of 16 below 2^18 bytes")
    if not 0 <= base_offset < 8:
        raise ValueError(f"base_offset must be 0..7, got {base_offset}")
    return ((lbo >> 4) << 16) | ((sbo >> 4) << 32) | (base_offset << 49) | (SWIZZLE_MODE[swizzle] << 62)


@builtin
def wgmma_desc(b: Builder, ptr, swizzle: int = 128, rows=None, row_bytes=None, lbo=None, sbo=None, major="k"):
    """A 64-bit shared-memory matrix descriptor for wgmma: ``ptr`` is the tile's first byte (aligned to
    the swizzle atom, 8 x swizzle bytes); swizzle 0/32/64/128; ``major`` 'k' or 'mn' (then pass
    trans_a/trans_b=True to wgmma, and ``rows`` = the tile's K rows); see ``descriptor_fields``."""
    if isinstance(ptr, SharedArray):
        ptr = ptr.base
    if not (isinstance(ptr, Node) and isinstance(ptr.type, PtrType) and ptr.type.space == "shared"):
        b.error(f"wgmma_desc(): ptr must be a shared pointer or array, got {describe(ptr)}"[:200])
    try:
        bits = descriptor_fields(swizzle, rows, row_bytes, lbo, sbo, major=major)
    except ValueError as e:
        b.error(f"wgmma_desc(): {e}")
    addr = b.bitcast(ptr, u32)
    start = b.binary("and", b.shift("shr", addr, 4), 0x3FFF)  # bits 0-13: address >> 4
    lo = b.binary("or", start, b.const(u32, bits & 0xFFFFFFFF))
    hi = b.const(u32, bits >> 32)
    return b.emit("inst", u64, (lo, hi), {"form": "pack.b64"})


@builtin
def wgmma_desc_add(b: Builder, desc, nbytes: int):
    """The descriptor of the tile ``nbytes`` further on in shared memory (a compile-time multiple of 16,
    which may be negative): ``desc``'s start address plus nbytes / 16, its other fields unchanged. The
    walk of a k loop over one tile (``wgmma_desc(p + k)`` for every k) as one add an operand, from a
    descriptor built once: the address field of any tile inside shared memory has room for the sum."""
    if not (isinstance(nbytes, int) and not isinstance(nbytes, bool) and nbytes % 16 == 0
            and abs(nbytes) < 2**18):
        b.error(f"wgmma_desc_add(): nbytes must be a compile-time multiple of 16 below 2^18 in size, "
                f"got {describe(nbytes)}")
    if not (isinstance(desc, Node) and desc.type == u64):
        b.error(f"wgmma_desc_add(): desc must be a descriptor from wgmma_desc, got {describe(desc)}"[:200])
    if nbytes == 0:
        return desc
    if desc.op.startswith("inst") and desc.attrs.get("form") == "pack.b64":     # add to the low word only
        lo, hi = desc.operands
        return b.emit("inst", u64, (b.binary("add", lo, b.const(u32, (nbytes >> 4) & 0xFFFFFFFF)), hi),
                      {"form": "pack.b64"})
    return b.binary("add", desc, b.const(u64, (nbytes >> 4) & 0xFFFFFFFFFFFFFFFF))


@builtin
def wgmma_fence(b: Builder):
    """Order register accesses before the next wgmma (needed before the first one and after any
    write of its accumulator or A registers by other instructions)."""
    b.emit("inst", attrs={"form": "wgmma.fence"})


@builtin
def wgmma_commit(b: Builder):
    """Close the group of the wgmmas issued since the last commit."""
    b.emit("inst", attrs={"form": "wgmma.commit_group"})


@builtin
def wgmma_wait(b: Builder, n: int, *accs, complete: int = 0):
    """Wait until at most ``n`` wgmma groups are pending; returns the accumulators (one value, or a tuple
    for several) -- use those, not the values wgmma returned. With n > 0 they may still only feed wgmma,
    except the first ``complete`` of them: the caller states that their groups were committed before
    the ``n`` newest (software pipelining: S_j's group, then P V's, then ``wgmma_wait(1, s, complete=1)``
    gives S_j to read while P V runs on)."""
    if not (isinstance(n, int) and 0 <= n <= 7):
        b.error(f"wgmma_wait(): n must be a compile-time int 0..7, got {describe(n)}")
    if not (isinstance(complete, int) and 0 <= complete <= len(accs)):
        b.error(f"wgmma_wait(): complete must be a compile-time int 0..{len(accs)} (accumulators passed), "
                f"got {describe(complete)}")
    b.emit("inst", attrs={"form": "wgmma.wait_group", "n": n})
    out = []
    for i, a in enumerate(accs):
        if not (isinstance(a, Node) and isinstance(a.type, TupleType)):
            b.error(f"wgmma_wait(): accumulators must be the register tuples wgmma returned, got {describe(a)}"[:200])
        out.append(b.emit("inst", a.type, (a,), {"form": "wgmma.done", "n": 0 if i < complete else n}))
    if not out:
        return None
    return out[0] if len(out) == 1 else tuple(out)


@builtin
def wgmma_zeros(b: Builder, n: int, acc=f32):
    """A zero m64nN accumulator for one thread: N/2 f32 or i32 registers, or N/4 f16x2."""
    if not (isinstance(n, int) and 8 <= n <= 256 and n % 8 == 0):
        b.error(f"wgmma_zeros(): n must be a multiple of 8 in 8..256, got {describe(n)}")
    if acc in (f32, "f32"):
        return b.make_tuple([b.const(f32, 0.0)] * (n // 2))
    if acc in (i32, "s32", "i32"):
        return b.make_tuple([b.const(i32, 0)] * (n // 2))
    if acc in (f16, f16x2, "f16"):
        return b.make_tuple([b.bitcast(b.const(u32, 0), f16x2)] * (n // 4))
    b.error(f"wgmma_zeros(): acc must be f32, f16 or i32, got {describe(acc)}")


def _acc_kind(b: Builder, c: Node) -> tuple:
    """(accumulator name, N) from a register tuple."""
    if not (isinstance(c, Node) and isinstance(c.type, TupleType)):
        b.error(f"wgmma(): acc must be an accumulator tuple (wgmma_zeros(n) or a wgmma result), got {describe(c)}"[:200])
    types = set(c.type.elems)
    kind = {f32: "f32", i32: "s32", f16x2: "f16"}.get(types.pop()) if len(types) == 1 else None
    if kind is None:
        b.error(f"wgmma(): the accumulator must be f32, i32 or f16x2 registers, got {c.type}")
    return kind, len(c.type) * (4 if kind == "f16" else 2)


@builtin
def wgmma(b: Builder, a, b_desc, acc, *, dtype=None, scale_d=True, negate_a: bool = False,
          negate_b: bool = False, trans_a: bool = False, trans_b: bool = False, satfinite: bool = False):
    """``acc = A @ B + acc`` (``scale_d=False``: ``A @ B``) for one warpgroup, m64nNkK (wgmma.mma_async).

    a: a descriptor (wgmma_desc) or 4 registers of A (the A fragment, 9.7.15.5.1); b_desc: B's descriptor.
    N comes from the accumulator (wgmma_zeros(N), a wgmma result, or a list of its registers, e.g.
    rescaled element-wise after a wait); dtype 'f16' 'bf16' 'tf32' 'e4m3' 'e5m2' 's8' 'u8' or a
    pair (a, b) for fp8/int8. negate_* (float types), trans_* (f16/bf16: the operand is MN-major in
    shared memory, its descriptor built with ``wgmma_desc(..., major="mn", rows=BK)``; trans_a needs A
    from shared memory).
    """
    if isinstance(acc, (tuple, list)) and acc and all(isinstance(x, Node) for x in acc):
        acc = b.make_tuple(list(acc))      # an accumulator rebuilt element-wise (rescaled, say)
    kind, n = _acc_kind(b, acc)
    regs_a = isinstance(a, (tuple, list)) or (isinstance(a, Node) and isinstance(a.type, TupleType))
    if regs_a:
        A = a if isinstance(a, Node) else b.make_tuple(list(a))
        if len(A.type) != 4 or any(t.bits != 32 for t in A.type.elems):
            b.error(f"wgmma(): A from registers is 4 32-bit registers, got {A.type}")
        if dtype is None:
            dtype = _ALIAS.get(A.type.elems[0])
        # packed f16x2/bf16x2 registers are .b32 already: a bitcast would be a mov inside the pipeline
        # stage of any wgmma in flight, which makes ptxas serialise them (C7513)
        A = b.make_tuple([x if x.type in (u32, f16x2, bf16x2) else b.bitcast(x, u32)
                          for x in (b.extract(A, i) for i in range(4))])
    elif isinstance(a, Node) and a.type == u64:
        A = a
    else:
        b.error(f"wgmma(): a must be a descriptor (wgmma_desc) or 4 registers, got {describe(a)}"[:200])
    if not (isinstance(b_desc, Node) and b_desc.type == u64):
        b.error("wgmma(): b_desc must be a u64 descriptor from wgmma_desc()")
    pair = dtype if isinstance(dtype, (tuple, list)) else (dtype, dtype)
    an, bn = (_ALIAS.get(x, x) if isinstance(x, ScalarType) else x for x in pair)
    if an not in _ELEM or bn not in _ELEM:
        b.error(f"wgmma(): dtype must be one of {', '.join(_ELEM)} (or a pair), got {describe(dtype)}")
    k = _K_BYTES * 8 // _ELEM[an]
    src = "rs" if regs_a else "ss"
    if an in ("f16", "bf16", "tf32"):
        if bn != an:
            b.error(f"wgmma(): A and B must have one type for {an}, got {an} x {bn}")
        name = f"wgmma.m64n{n}k{k}.{kind}.{an}.{src}" if an != "tf32" else f"wgmma.m64n{n}k8.{kind}.tf32.{src}"
    elif an in ("s8", "u8"):
        name = f"wgmma.m64n{n}k32.{kind}.{an}.{bn}{'.satfinite' if satfinite else ''}.{src}"
    else:
        name = f"wgmma.m64n{n}k32.{kind}.{an}.{bn}.{src}"
    if name not in forms():
        valid = sorted({int(f.params["n"]) for f in forms().values() if f.family == "wgmma" and
                        f.params.get("a") == an and f.params.get("acc") == kind})
        b.error(f"wgmma(): no m64n{n}k{k} form for {an} x {bn} -> {kind}"
                + (f"; N must be one of {valid}" if valid else f"; {an} does not accumulate in {kind}"))
    if satfinite and an not in ("s8", "u8"):
        b.error("wgmma(): satfinite applies to s8/u8 only")
    ints = an in ("s8", "u8")
    if ints and (negate_a or negate_b):
        b.error("wgmma(): negate_a/negate_b apply to float types only")
    if (trans_a or trans_b) and an not in ("f16", "bf16"):
        b.error(f"wgmma(): trans_a/trans_b exist for f16/bf16 only; {an} operands must be K-major")
    if trans_a and regs_a:
        b.error("wgmma(): trans_a needs A in shared memory (a descriptor)")
    sd = b.truth(scale_d)
    sd = b.const(bool_, sd) if isinstance(sd, bool) else sd
    attrs = {"form": name, "scale_a": -1 if negate_a else 1, "scale_b": -1 if negate_b else 1,
             "tnsp_a": int(trans_a), "tnsp_b": int(trans_b)}
    return b.emit("inst", acc.type, (A, b_desc, sd, acc), attrs)


def wgmma_coord(i: int, thread) -> tuple:
    """(row, col) in the 64 x N accumulator of element ``i`` held by warpgroup thread ``thread`` (0..127):
    warp w owns rows 16w..16w+15; within it the m16n8 C layout repeats along N every 8 columns (4 elements)."""
    w, lane = thread // 32, thread % 32
    g, t = lane // 4, lane % 4
    j, r = divmod(i, 4)
    return 16 * w + g + 8 * ((r >> 1) & 1), 8 * j + 2 * t + (r & 1)
