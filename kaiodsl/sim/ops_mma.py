"""Tensor-core instructions: mma.sync m16n8kK, ldmatrix, stmatrix (PTX ISA 9.7.14, 9.7.9.26-27).

Fragment layouts are data: for lane l (groupID g = l>>2, threadID_in_group t = l%4) and
register r holding e elements j of one row-major operand (PTX ISA 9.7.14.5.x figures):
  A (16 x K): row = g + 8*(r & 1),     col = (r >> 1)*4e + t*e + j
  B (K x 8):  row = r*4e + t*e + j,     col = g
  C/D (16x8): element i: row = g + 8*(i >> 1), col = 2t + (i & 1)
This one formula covers f16/bf16 (e=2), tf32 (e=1), s8/u8/e4m3/e5m2 (e=4), s4/u4 (e=8).
"""

from __future__ import annotations

import numpy as np

from .numeric import bf16_to_f32, fp8_to_f32, tf32_value
from .ops_warp import require_full_warps
from .registry import rule

_ELEM_BITS = {"f16": 16, "bf16": 16, "tf32": 32, "s8": 8, "u8": 8, "e4m3": 8, "e5m2": 8, "s4": 4, "u4": 4}
_LANES = np.arange(32)
_G, _T = _LANES >> 2, _LANES & 3


def a_layout(K, e):
    nregs = K // (2 * e)
    r, j = np.divmod(np.arange(nregs * e), e)
    rows = _G[:, None] + 8 * (r[None, :] & 1)
    cols = (r[None, :] >> 1) * 4 * e + _T[:, None] * e + j[None, :]
    return rows, cols, nregs


def b_layout(K, e):
    nregs = K // (4 * e)
    r, j = np.divmod(np.arange(nregs * e), e)
    rows = r[None, :] * 4 * e + _T[:, None] * e + j[None, :]
    cols = np.broadcast_to(_G[:, None], rows.shape)
    return rows, cols, nregs


def c_layout():
    i = np.arange(4)
    return _G[:, None] + 8 * (i[None, :] >> 1), 2 * _T[:, None] + (i[None, :] & 1)


def _elements(regs, typ):
    """[..., nregs] uint32 -> [..., nregs*e] element values (f64 or int64), low bits first."""
    w = _ELEM_BITS[typ]
    e = 32 // w
    x = regs.astype(np.uint64)
    parts = [(x >> np.uint64(j * w)) & np.uint64((1 << w) - 1) for j in range(e)]
    v = np.stack(parts, axis=-1).reshape(*regs.shape[:-1], -1)
    if typ == "f16":
        return v.astype(np.uint16).view(np.float16).astype(np.float64)
    if typ == "bf16":
        return bf16_to_f32(v.astype(np.uint16)).astype(np.float64)
    if typ == "tf32":
        return tf32_value(v.astype(np.uint32)).astype(np.float64)
    if typ in ("e4m3", "e5m2"):
        return fp8_to_f32(v, typ).astype(np.float64)
    v = v.astype(np.int64)
    if typ[0] == "s":
        v = np.where(v >= (1 << (w - 1)), v - (1 << w), v)
    return v


def _gather(m, ops, dtype_name):
    regs = [m.getter(op, dtype_name) for op in ops]
    return lambda: np.stack([np.broadcast_to(np.asarray(g()), (m.T,)) for g in regs], axis=-1)


@rule("mma")
def _mma(m, ins, mods):
    shape = next(x for x in mods if x.startswith("m") and "n" in x and "k" in x)
    M, rest = shape[1:].split("n")
    N, K = (int(x) for x in rest.split("k"))
    if (int(M), N) != (16, 8):
        raise NotImplementedError(f"mma shape {shape}")
    dt, at, bt, ct = mods[-4:]
    satfinite = "satfinite" in mods
    ea, eb = 32 // _ELEM_BITS[at], 32 // _ELEM_BITS[bt]
    ar, ac, na = a_layout(K, ea)
    br, bc, nb = b_layout(K, eb)
    cr, cc = c_layout()
    d_ops, a_ops, b_ops, c_ops = (op[1] for op in ins.operands[:4])
    if len(a_ops) != na or len(b_ops) != nb:
        raise ValueError(f"{shape}.{at}: expected {na} A and {nb} B registers")
    A, B = _gather(m, a_ops, "b32"), _gather(m, b_ops, "b32")
    half_c = ct == "f16"
    C = _gather(m, c_ops, "b32" if not half_c else "b32")
    d_set = [m.setter(op, "b32") for op in d_ops]
    T = m.T

    def f(mask):
        require_full_warps(m, mask, "mma.sync")
        mask_arr = np.ones(T, bool) if mask is None else mask
        warps = np.flatnonzero(mask_arr.reshape(-1, 32).any(axis=1))
        W = warps.size
        lanes = (warps[:, None] * 32 + _LANES[None, :])
        av = _elements(A()[lanes], at)  # [W, 32, nA]
        bv = _elements(B()[lanes], bt)
        Am = np.zeros((W, 16, K), av.dtype)
        Bm = np.zeros((W, K, 8), bv.dtype)
        Am[:, ar.ravel(), ac.ravel()] = av.reshape(W, -1)
        Bm[:, br.ravel(), bc.ravel()] = bv.reshape(W, -1)
        creg = C()[lanes]
        if ct == "s32":
            cv = creg.astype(np.uint32).view(np.int32).astype(np.int64)
        elif half_c:
            cv = _elements(creg, "f16")
        else:
            cv = creg.astype(np.uint32).view(np.float32).astype(np.float64)
        Cm = np.zeros((W, 16, 8), cv.dtype)
        Cm[:, cr.ravel(), cc.ravel()] = cv.reshape(W, -1)
        Dm = np.matmul(Am, Bm) + Cm
        dv = Dm[:, cr, cc]  # [W, 32, 4]
        if dt == "s32":
            if satfinite:
                dv = np.clip(dv, -2**31, 2**31 - 1)
            out = (dv & 0xFFFFFFFF).astype(np.uint32)
        elif dt == "f16":
            h = dv.astype(np.float32).astype(np.float16).view(np.uint16).astype(np.uint32)
            out = h[..., 0::2] | (h[..., 1::2] << np.uint32(16))
        else:
            out = dv.astype(np.float32).view(np.uint32)
        for r, s in enumerate(d_set):
            full = np.zeros(T, np.uint32)
            full[lanes.ravel()] = out[..., r].ravel()
            s(full, mask)
    return f


def _ld_st_matrix(m, ins, mods, store):
    nmat = next(int(x[1:]) for x in mods if x in ("x1", "x2", "x4"))
    trans = "trans" in mods
    from .ops_mem import address, read, write
    addr_op = ins.operands[1] if not store else ins.operands[0]
    regs_op = ins.operands[0] if not store else ins.operands[1]
    regs = regs_op[1] if regs_op[0] == "vec" else [regs_op]
    addr = address(m, addr_op)
    T = m.T
    what = "stmatrix" if store else "ldmatrix"
    l = _LANES
    # element (row, col) of matrix i that lane l holds in register i, elements j=0,1
    rr = np.stack([l >> 2, l >> 2], 1) if not trans else np.stack([2 * (l & 3), 2 * (l & 3) + 1], 1)
    cc = np.stack([2 * (l & 3), 2 * (l & 3) + 1], 1) if not trans else np.stack([l >> 2, l >> 2], 1)
    getters = [m.getter(op, "b32") for op in regs] if store else None
    setters = [m.setter(op, "b32") for op in regs] if not store else None

    def f(mask):
        require_full_warps(m, mask, what)
        mask_arr = np.ones(T, bool) if mask is None else mask
        warps = np.flatnonzero(mask_arr.reshape(-1, 32).any(axis=1))
        W = warps.size
        prov = (warps[:, None] * 32 + np.arange(8 * nmat)[None, :]).ravel()  # lanes giving row addresses
        a = np.broadcast_to(np.asarray(addr()), (T,))[prov].astype(np.uint64)
        if (a % np.uint64(16) != 0).any():
            i = int(np.argmax(a % np.uint64(16) != 0))
            m.fail(f"{what} row address must be 16-byte aligned", int(prov[i]), int(a[i]), "shared")
        lanes = warps[:, None] * 32 + l[None, :]
        if not store:
            words = np.stack([read(m, "shared", a + np.uint64(4 * k), 4, prov) for k in range(4)], -1)
            mats = words.view(np.uint16).reshape(W, nmat, 8, 8)  # [W, matrix, row, col]
            for i, s in enumerate(setters):
                e = mats[:, i][:, rr, cc].astype(np.uint32)  # [W, 32, 2]
                full = np.zeros(T, np.uint32)
                full[lanes.ravel()] = (e[..., 0] | (e[..., 1] << np.uint32(16))).ravel()
                s(full, mask)
            return
        mats = np.zeros((W, nmat, 8, 8), np.uint16)
        for i, g in enumerate(getters):
            v = np.broadcast_to(np.asarray(g()), (T,))[lanes].astype(np.uint32)  # [W, 32]
            mats[:, i][:, rr[:, 0], cc[:, 0]] = (v & np.uint32(0xFFFF)).astype(np.uint16)
            mats[:, i][:, rr[:, 1], cc[:, 1]] = (v >> np.uint32(16)).astype(np.uint16)
        words = mats.reshape(W * nmat * 8, 4, 2).view(np.uint32).reshape(-1, 4)
        for k in range(4):
            write(m, "shared", a + np.uint64(4 * k), 4, words[:, k], prov)
    return f


@rule("ldmatrix")
def _ldmatrix(m, ins, mods):
    return _ld_st_matrix(m, ins, mods, store=False)


@rule("stmatrix")
def _stmatrix(m, ins, mods):
    return _ld_st_matrix(m, ins, mods, store=True)
