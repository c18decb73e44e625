"""wgmma (PTX ISA 9.7.15): executed when issued by a full warpgroup; shared operands are read through
the matrix descriptor (9.7.15.5.1) with its swizzle (wgmma_smem.py: both majors); register fragments
follow 9.7.15.5.1's figures. The accumulators stay in flight until a wait_group completes their group.
"""

from __future__ import annotations

import numpy as np

from . import wgmma_smem
from .ops_hopper import _async_read, _proxy
from .ops_mma import _elements, a_layout
from .registry import rule


_EBYTES = {"f16": 2, "bf16": 2, "tf32": 4, "e4m3": 1, "e5m2": 1, "s8": 1, "u8": 1}


def smem_matrix(m, desc: int, rows: int, typ: str, blk: int, t: int, mn_major: bool = False):
    """[rows, K] elements of an operand addressed by a matrix descriptor (PTX ISA 9.7.15.5.1), K-major
    or (imm-trans 1) MN-major; the addressing is wgmma_smem.operand_addresses."""
    start, _, _, w, swizzled = wgmma_smem.fields(desc)
    if swizzled and ((start >> 7) & (w // 16 - 1)):
        m.fail(f"wgmma: descriptor start {start:#x} is not aligned to its {w}-byte swizzle atom "
               f"({8 * w} bytes)", t, start, "shared")
    lin = wgmma_smem.operand_addresses(desc, rows, _EBYTES[typ], mn_major)
    if lin.max() >= m.shared_size:
        m.fail(f"wgmma: descriptor reads shared byte {int(lin.max()):#x}, outside the "
               f"{m.shared_size}-byte allocation", t, start, "shared")
    _async_read(m, blk * m.shared.pad + lin, "wgmma")
    raw = m.shared.b8[blk * m.shared.pad + lin]  # [rows, 32] bytes
    eb = _EBYTES[typ]
    words = raw.reshape(rows, 32 // eb, eb)
    if eb == 1:
        codes = words[..., 0].astype(np.uint32)
    else:
        codes = words.copy().view(np.uint16 if eb == 2 else np.uint32)[..., 0].astype(np.uint32)
    per = 4 // eb  # pack into u32 words (low element first) and reuse the mma element decoder
    packed = np.zeros((rows, 32 // 4), np.uint32)
    for j in range(per):
        packed |= codes[:, j::per] << np.uint32(8 * eb * j)
    return _elements(packed, typ)  # [rows, K]


def _acc_layout(n):
    """(row, col) of each D element i of lane l in warp w: rows 16w + g + 8((i>>1)&1), cols 8(i//4) + 2t + (i&1)."""
    i = np.arange(n // 2)
    lane = np.arange(32)[:, None]
    g, t = lane >> 2, lane & 3
    return g + 8 * ((i[None, :] >> 1) & 1), 8 * (i[None, :] // 4) + 2 * t + (i[None, :] & 1)


# In flight: a wgmma's accumulator registers until a wait_group completes its group (PTX ISA 9.7.15.7).
# The result is computed when issued; the registers count as unwritten for the issuing threads meanwhile
# (Machine.async_regs), so an instruction that reads or writes one is reported. An ``.rs`` wgmma's A
# fragment registers are read in flight the same way (Machine.async_reads): writing one is reported.
def _commits(m):
    if not hasattr(m, "wg_commits"):
        m.wg_commits = np.zeros(m.T, np.int64)  # wgmma.commit_group executed per thread
    return m.wg_commits


def _in_flight(m, names, th, line):
    """wgmma by threads th writes registers ``names``: in flight in the group its next commit closes."""
    group = _commits(m)[th]
    for n in names:
        rec = m.async_regs.setdefault(n, [np.full(m.T, -1, np.int64), line])
        rec[0][th], rec[1] = group, line
        m._written(n)[th] = False
        m.full.discard(n)


def _reading(m, names, th, line):
    """wgmma by threads th reads A-fragment registers ``names`` until the group its next commit closes
    completes."""
    group = _commits(m)[th]
    for n in names:
        rec = m.async_reads.setdefault(n, [np.full(m.T, -1, np.int64), line])
        rec[0][th], rec[1] = group, line


def _release_reads(m, act, keep):
    """The A fragments of every group but the ``keep`` newest are free again for the threads ``act``."""
    newest = _commits(m) - keep
    for n in list(m.async_reads):
        grp = m.async_reads[n][0]
        grp[act & (grp >= 0) & (grp < newest)] = -1
        if (grp < 0).all():
            del m.async_reads[n]


def _complete(m, act, keep=None, names=None):
    """Registers land for the threads ``act``: those of every group but the ``keep`` newest
    (wgmma.wait_group keep), or every group of ``names`` (a later wgmma chains on the accumulator)."""
    newest = _commits(m) - (keep or 0)
    for n in list(m.async_regs) if names is None else [x for x in names if x in m.async_regs]:
        grp = m.async_regs[n][0]
        done = act & (grp >= 0) & (True if names is not None else grp < newest)
        m._written(n)[done] = True
        grp[done] = -1
        if (grp < 0).all():
            del m.async_regs[n]


def _check_written(m, names, th):
    """The accumulator registers that a wgmma with scale-d true reads: written for threads th."""
    for n in names:
        if n not in m.full and th.size:
            w = m._written(n)[th]
            if not w.all():
                m._unwritten(n, int(th[np.argmin(w)]))


@rule("wgmma")
def _wgmma(m, ins, mods):
    if mods[0] == "fence":
        return lambda mask: None
    if mods[0] in ("commit_group", "wait_group"):
        keep = ins.operands[0][1] if mods[0] == "wait_group" else None
        T = m.T

        def group(mask):
            act = np.ones(T, bool) if mask is None else mask
            if keep is None:
                _commits(m)[act] += 1
                return
            if m.async_regs:
                _complete(m, act, keep)
            if m.async_reads:
                _release_reads(m, act, keep)
        return group
    if mods[0] != "mma_async":
        raise NotImplementedError(ins.opcode)
    _proxy(m)
    si = next(i for i, x in enumerate(mods) if x.startswith("m64n"))
    n, k = (int(x) for x in mods[si][4:].split("k"))
    dt, at_, bt = mods[si + 1:si + 4]
    sat = "satfinite" in mods
    ops = ins.operands
    d_ops = ops[0][1]
    regs_a = ops[1][0] == "vec"
    a_get = [m.getter(o, "b32") for o in ops[1][1]] if regs_a else m.getter(ops[1], "u64")
    a_names = [o[1] for o in ops[1][1] if o[0] == "reg"] if regs_a else []
    b_get = m.getter(ops[2], "u64")
    sd_get = m.getter(ops[3], "pred")
    imms = [o[1] for o in ops[4:]]
    floats = at_ not in ("s8", "u8")
    sa, sb = (imms[0], imms[1]) if floats else (1, 1)
    tn = imms[2:] if floats else []  # ss: imm-trans-a, imm-trans-b; rs: imm-trans-b (f16/bf16 forms only)
    mn_a, mn_b = (bool(tn[0]) and not regs_a, bool(tn[-1])) if tn else (False, False)
    half = dt == "f16"
    d_names = [o[1] for o in d_ops]
    d_regs = [m.regs[n] for n in d_names]  # read where scale-d is true (checked there): D = A B otherwise
    d_set = [m.setter(o, "b32") for o in d_ops]
    rows, cols = _acc_layout(n)
    T = m.T

    def f(mask):
        if m.tpb % 128:
            m.fail(f"wgmma needs whole warpgroups: the block has {m.tpb} threads, not a multiple of 128")
        act = np.ones(T, bool) if mask is None else mask
        if m.async_regs:  # wgmmas chained on one accumulator are ordered with each other (9.7.15.7)
            _complete(m, act, names=d_names)
        groups = np.unique(np.flatnonzero(act) // 128)
        out = [np.zeros(T, np.uint32) for _ in d_ops]
        for gi in groups:
            th = gi * 128 + np.arange(128)
            if not act[th].all():
                m.fail("wgmma.mma_async must be executed by all 128 threads of the warpgroup",
                       int(th[np.argmin(act[th])]))
            blk = int(m.blk[th[0]])
            bdesc = np.broadcast_to(np.asarray(b_get()), (T,))[th]
            if (bdesc != bdesc[0]).any():
                m.fail("wgmma: the B descriptor differs between threads of the warpgroup", int(th[0]))
            B = smem_matrix(m, int(bdesc[0]), n, bt, blk, int(th[0]), mn_b)  # [N, K]
            if regs_a:
                e = 4 // _EBYTES[at_]
                ar, ac, _ = a_layout(k, e)
                A = np.zeros((64, k))
                for w in range(4):
                    lanes = th[32 * w:32 * w + 32]
                    regs = np.stack([np.broadcast_to(np.asarray(g()), (T,))[lanes] for g in a_get], -1)
                    A[16 * w + ar.ravel(), ac.ravel()] = _elements(regs.astype(np.uint32), at_).reshape(-1)
            else:
                adesc = np.broadcast_to(np.asarray(a_get()), (T,))[th]
                A = smem_matrix(m, int(adesc[0]), 64, at_, blk, int(th[0]), mn_a)
            D = (sa * A) @ (sb * B).T  # [64, N]
            sd = np.broadcast_to(np.asarray(sd_get()), (T,))[th]
            _check_written(m, d_names, th[sd])
            regs = np.stack([r[th].astype(np.uint32) for r in d_regs], -1)  # [128, nregs]
            for w in range(4):
                lanes = th[32 * w:32 * w + 32]
                r_ = regs[32 * w:32 * w + 32]
                vals = D[16 * w + rows, cols]  # [32, N/2]
                if half:
                    c = _elements(r_.astype(np.uint32), "f16")
                elif dt == "s32":
                    c = r_.astype(np.uint32).view(np.int32).astype(np.int64)
                else:
                    c = r_.astype(np.uint32).view(np.float32).astype(np.float64)
                vals = vals + np.where(sd[32 * w:32 * w + 32, None], c, 0)
                if dt == "s32":
                    v = vals.astype(np.int64)
                    v = np.clip(v, -2**31, 2**31 - 1) if sat else v
                    words = (v & 0xFFFFFFFF).astype(np.uint32)
                elif half:
                    h = vals.astype(np.float32).astype(np.float16).view(np.uint16).astype(np.uint32)
                    words = h[:, 0::2] | (h[:, 1::2] << np.uint32(16))
                else:
                    words = vals.astype(np.float32).view(np.uint32)
                for r in range(len(d_ops)):
                    out[r][lanes] = words[:, r]
        for r, s in enumerate(d_set):
            s(out[r], act)
        _in_flight(m, d_names, np.flatnonzero(act), ins.line)
        if regs_a:
            _reading(m, a_names, np.flatnonzero(act), ins.line)
    return f
