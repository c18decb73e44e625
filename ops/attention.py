"""Scaled dot-product attention: ``kaiodsl.ops.attention(q, k, v, *, causal=False, scale=None, ...)``.

``q`` [B, H, Sq, D], ``k``/``v`` [B, Hkv, Sk, D], f16 or bf16, any outer strides with unit stride on D
(``x.transpose(1, 2)`` of [B, S, H, D] storage passes without a copy; a head stride of 0 broadcasts
one K/V head). H must be a multiple of Hkv (GQA/MQA: query head h reads K/V head h // (H / Hkv)).
D is 32, 64, 96, 128 or 256. f32 accumulation and softmax statistics (exp2, the scale folded into
log2(e)); the output has q's dtype; ``return_lse`` also gives the natural-log logsumexp, f32 [B, H, Sq].

``causal``: False; "top_left" (query i sees keys j <= i: what torch's ``is_causal=True`` does);
"bottom_right" (query i sees keys j <= i + Sk - Sq: FlashAttention >= 2.1, decode with a KV cache);
``True`` means "top_left". A query row that sees no key (bottom-right with Sq > Sk, or
``seqlens_k`` 0) gets output 0 and LSE -inf, never NaN. Deterministic: one fixed summation order.

``seqlens_k`` (i32 [B]): the valid keys of each batch (a padded KV cache); with "bottom_right" the
diagonal aligns to that length. Short queries (Sq <= 16) against long keys split the keys across
blocks and merge the partial results in a second pass (flash-decoding); ``num_splits`` overrides.

``descale=(dq, dk, dv)``: q, k, v are e4m3 (fp8) whose true values are q * dq, k * dk, v * dv; sm_90a,
D 64 or 128, a bf16 or f16 output (ops/attention_sm90_fp8.py).
"""

import math

import numpy as np

from kaiodsl import bf16, e4m3, e5m2, f16, f32, i32
from kaiodsl.errors import ArgumentError

from ._common import Arr, inspect_array, new_like, require_dtype, require_rank, require_smem, same_kind
from .attention_fwd import FwdConfig, combine_grid, combine_kernel, forward_kernel, fwd_config

HEAD_DIMS = (32, 64, 96, 128, 256)
CAUSAL = {False: None, True: "top_left", "top_left": "top_left", "bottom_right": "bottom_right", None: None}
LOG2E = 1.4426950408889634
SMS = 132          # split-KV target: enough blocks to fill an H100/H200 twice over


def causal_mode(causal, op: str):
    """False / True / "top_left" / "bottom_right" -> None / "top_left" / "bottom_right"."""
    if isinstance(causal, (bool, str, type(None))) and causal in CAUSAL:
        return CAUSAL[causal]
    raise ArgumentError(f"{op}(): causal must be False, True (= 'top_left'), 'top_left' or 'bottom_right', "
                        f"got {causal!r}")


def softmax_scale(scale, d: int, op: str) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ArgumentError(f"{op}(): scale must be a finite positive number (default 1/sqrt(D)), got {scale!r}")
    return float(scale)


def operand(a: Arr, op: str, zero_ok: bool = True):
    """(the object to pass, element offset, strides) of a [B, H, S, D] array with unit stride on D.
    A strided numpy view is passed as its C-contiguous base plus the view's offset (the simulator copies
    arrays whole); torch tensors and device arrays pass as they are (data_ptr is the view's start)."""
    st = a.strides
    if a.shape[3] > 1 and st[3] != 1:
        raise ArgumentError(f"{op}(): '{a.name}' must have unit stride on the head dimension D, got strides "
                            f"{st} for shape {a.shape}")
    for n, (size, s) in enumerate(zip(a.shape[:3], st[:3])):
        if size > 1 and (s % 8 or s < 0 or (s == 0 and not zero_ok)):
            allowed = "a non-negative multiple of 8" if zero_ok else "a positive multiple of 8"
            raise ArgumentError(f"{op}(): '{a.name}' has stride {s} on dimension {n} (shape {a.shape}, strides "
                                f"{st}); it must be {allowed} elements (16-byte rows for cp.async)")
    if a.shape[2] > 1 and st[2] >= 2**31:
        raise ArgumentError(f"{op}(): '{a.name}' has a row stride of {st[2]} elements; it must be below 2^31")
    obj, off = a.obj, 0
    if a.kind == "numpy" and not a.obj.flags.c_contiguous:
        root = a.obj
        while isinstance(root.base, np.ndarray):
            root = root.base
        if not root.flags.c_contiguous:
            raise ArgumentError(f"{op}(): '{a.name}' is a numpy view of a non-contiguous array; pass a view of "
                                f"C-contiguous storage")
        off = (a.obj.__array_interface__["data"][0] - root.__array_interface__["data"][0]) // a.obj.itemsize
        obj = root.reshape(-1)
    elif a.kind == "torch" and a.obj.data_ptr() % 16:
        raise ArgumentError(f"{op}(): '{a.name}' starts at address {a.obj.data_ptr():#x}, not 16-byte aligned")
    if off % 8:
        raise ArgumentError(f"{op}(): '{a.name}' starts {off} elements into its storage; it must be a "
                            f"multiple of 8 (16-byte aligned rows)")
    return obj, off, tuple(s if size > 1 else 0 for size, s in zip(a.shape, st))


def check_qkv(q, k, v, op: str, dtypes=(f16, bf16)):
    """The shared checks of q/k/v: (qz, kz, vz, B, H, Hkv, Sq, Sk, D)."""
    qz, kz, vz = (inspect_array(n, x, op) for n, x in (("q", q), ("k", k), ("v", v)))
    for z, what in ((qz, "[B, H, Sq, D]"), (kz, "[B, Hkv, Sk, D]"), (vz, "[B, Hkv, Sk, D]")):
        require_rank(z, 4, op, what)
    if qz.dtype in (e4m3, e5m2) and qz.dtype not in dtypes:
        raise ArgumentError(f"{op}(): 'q' has dtype {qz.dtype}; fp8 (e4m3) inputs are taken by attention(..., "
                            f"descale=(dq, dk, dv)) (the sm_90a forward) only")
    require_dtype(qz, dtypes, op)
    require_dtype(kz, (qz.dtype,), op)
    require_dtype(vz, (qz.dtype,), op)
    same_kind(op, qz, kz, vz)
    B, H, Sq, D = qz.shape
    Bk, Hkv, Sk, Dk = kz.shape
    if vz.shape != kz.shape:
        raise ArgumentError(f"{op}(): 'v' has shape {vz.shape}; it must equal k's {kz.shape}")
    if (Bk, Dk) != (B, D):
        raise ArgumentError(f"{op}(): q is [B, H, Sq, D] = {qz.shape} but k is {kz.shape}: batch and head dim "
                            f"must match")
    if D not in HEAD_DIMS:
        raise ArgumentError(f"{op}(): head dim D={D} is not supported; allowed: {', '.join(map(str, HEAD_DIMS))}")
    if Hkv < 1 or H % Hkv:
        raise ArgumentError(f"{op}(): H={H} query heads must be a multiple of Hkv={Hkv} K/V heads (GQA/MQA)")
    if max(Sq, Sk) >= 2**31 // 256:
        raise ArgumentError(f"{op}(): sequence lengths Sq={Sq}, Sk={Sk} must be below {2**31 // 256}")
    return qz, kz, vz, B, H, Hkv, Sq, Sk, D


def _seqlens(seqlens_k, qz: Arr, B: int, op: str):
    if seqlens_k is None:
        return None
    sz = inspect_array("seqlens_k", seqlens_k, op)
    require_rank(sz, 1, op, "a vector [B] of valid key counts")
    require_dtype(sz, (i32,), op)
    if sz.shape[0] != B:
        raise ArgumentError(f"{op}(): 'seqlens_k' has {sz.shape[0]} elements; it must have B={B}")
    same_kind(op, qz, sz)
    return seqlens_k


def _out(out, qz: Arr, odt, op: str):
    if out is None:
        return None
    oz = inspect_array("out", out, op)
    require_dtype(oz, (odt,), op)
    if tuple(oz.shape) != tuple(qz.shape):
        raise ArgumentError(f"{op}(): 'out' has shape {oz.shape}; it must be q's {qz.shape}")
    same_kind(op, qz, oz)
    return oz


def num_splits_for(blocks: int, Sk: int, cfg: FwdConfig) -> int:
    """Flash-decoding: split the keys so that the grid gives every SM 2 blocks, at least 4 key blocks a
    split. (Measured on the H200, Sq = 1, GQA 32/8, D 128: about 256 one-warp blocks are the fastest
    from Sk 8k to 128k and batch 1 to 8, 3883 GB/s at 128k; 8 an SM, as before, gave 2916.)"""
    target = SMS * 2
    if blocks >= target:
        return 1
    return max(1, min((target + blocks - 1) // blocks, Sk // (4 * cfg.bk)))


def zeros_like(a: Arr, shape: tuple, dtype):
    """A zero array of the kind of ``a`` (the ops' empty outputs are uninitialised)."""
    if a.kind == "torch":
        return new_like(a, shape, dtype).zero_()
    if a.kind == "numpy":
        return np.zeros(shape, dtype.np_dtype)
    from kaiodsl.runtime import zeros

    return zeros(shape, dtype)


_I32 = {}


def _dummy_i32(like: Arr):
    key = (like.kind, str(like.device))
    if key not in _I32:
        _I32[key] = new_like(like, (1,), i32)
    return _I32[key]


def _takes_sm90(config, qz, kz, vz, oz, out_dtype, lens, num_splits, Sq, Sk, D, op) -> bool:
    """Whether the Hopper kernel (attention_sm90) runs: on sm_90a for f16/bf16, D 64 or 128, Sq > 64,
    contiguous q/k/v/out, the output in q's dtype, full key sequences, no split. An explicit
    Sm90AttnConfig asks for it and is an error where it cannot run; a FwdConfig asks for the sm_80 kernel."""
    from .attention_sm90 import SMEM_LIMIT, Sm90AttnConfig, wants_sm90
    from kaiodsl.compiler import default_arch

    forced = isinstance(config, Sm90AttnConfig)
    if config is not None and not forced:
        return False
    arrays = (qz, kz, vz) + ((oz,) if oz is not None else ())
    arch = default_arch()
    why = [(arch == "sm_90a", f"the target is {arch}, not sm_90a"),
           (D in (64, 128), f"head dim D={D} is not 64 or 128"),
           (out_dtype is None, "out_dtype must be None (q's dtype)"),
           (lens is None and num_splits in (None, 1), "seqlens_k and num_splits are not supported"),
           (Sk > 0, "Sk=0"),
           (all(z.contiguous for z in arrays), "q, k, v and out must be contiguous [B, H, S, D]")]
    if forced and D in (64, 128) and config.smem_bytes(D) > SMEM_LIMIT:
        why.append((False, f"it needs {config.smem_bytes(D)} bytes of shared memory at D={D}, at most "
                           f"{SMEM_LIMIT} fit (fewer stages or a smaller bn)"))
    bad = [w for ok, w in why if not ok]
    if forced:
        if bad:
            raise ArgumentError(f"{op}(): config={config!r} asks for the sm_90a kernel, which cannot run here: "
                                + "; ".join(bad))
        return True
    return not bad and wants_sm90(D, Sq, qz.dtype.name)


def attention(q, k, v, *, causal=False, scale=None, return_lse: bool = False, out=None, seqlens_k=None,
              num_splits=None, out_dtype=None, config: FwdConfig = None, descale=None):
    """softmax(q k^T * scale [+ causal mask]) v; see the module doc. Returns out, or (out, lse).
    ``out_dtype``: None (q's dtype) or "f32". ``descale=(dq, dk, dv)``: q, k, v are e4m3 whose true
    values are q * dq etc. (ops/attention_sm90_fp8.py; out_dtype then "bf16" (None) or "f16")."""
    op = "attention"
    if descale is not None:
        from .attention_sm90_fp8 import attention_fp8
        return attention_fp8(q, k, v, causal, scale, descale, return_lse, out, seqlens_k, num_splits, out_dtype,
                             config, op)
    qz, kz, vz, B, H, Hkv, Sq, Sk, D = check_qkv(q, k, v, op)
    if out_dtype not in (None, "f32", f32):
        raise ArgumentError(f"{op}(): out_dtype must be None (q's dtype) or 'f32', got {out_dtype!r}")
    odt = f32 if out_dtype is not None else qz.dtype
    mode = causal_mode(causal, op)
    sc = softmax_scale(scale, D, op)
    oz = _out(out, qz, odt, op)
    lens = _seqlens(seqlens_k, qz, B, op)
    qa, ka, va = operand(qz, op, False), operand(kz, op), operand(vz, op)
    if oz is not None:
        oa = operand(oz, op, False)
    if num_splits is not None and (isinstance(num_splits, bool) or not isinstance(num_splits, int)
                                   or num_splits < 1):
        raise ArgumentError(f"{op}(): num_splits must be a positive int or None (automatic), got {num_splits!r}")
    sm90 = _takes_sm90(config, qz, kz, vz, oz, out_dtype, lens, num_splits, Sq, Sk, D, op)
    if out is None:
        out = new_like(qz, (B, H, Sq, D), odt)
        oa = operand(inspect_array("out", out, op), op)
    lse = new_like(qz, (B, H, Sq), f32)
    if B * H * Sq == 0:
        return (out, lse) if return_lse else out
    if sm90:
        from .attention_sm90 import launch as sm90_launch
        sm90_launch(qa[0], ka[0], va[0], out, lse, qz.dtype.name, B, H, Hkv, Sq, Sk, D, mode, sc * LOG2E,
                    config, qz)
        return (out, lse) if return_lse else out
    # the kernel's view: (Sq, H, group, q/o strides, causal); one query row per head with a GQA group
    # (decode) packs the group's heads as the rows of one block, so each K/V tile is read once per group
    g = H // Hkv
    kq, kh, kg, kmode, qk, ok = Sq, H, g, mode, qa[2], oa[2]
    if Sq == 1 and g > 1 and mode != "top_left":        # bottom-right with Sq = 1 masks nothing
        kq, kh, kg, kmode = g, Hkv, 1, None
        qk = (qa[2][0], qa[2][1] * g, qa[2][1], 1)
        ok = (oa[2][0], oa[2][1] * g, oa[2][1], 1)
    cfg = config or fwd_config(D, kq)
    wide = max(qk[2], ka[2][2], va[2][2], ok[2]) * max(cfg.bq, cfg.bk) >= 2**31
    nqb = (kq + cfg.bq - 1) // cfg.bq
    splits = num_splits or (num_splits_for(nqb * B * kh, Sk, cfg) if kq <= 64 else 1)
    kps = ((Sk + splits - 1) // splits + cfg.bk - 1) // cfg.bk * cfg.bk if Sk else cfg.bk
    splits = max(1, (Sk + kps - 1) // kps) if Sk else 1
    shift = Sk - Sq if kmode == "bottom_right" else 0
    seq_mode = 0 if lens is None else (2 if kmode == "bottom_right" else 1)
    lens_arg = lens if lens is not None else _dummy_i32(qz)
    c = sc * LOG2E
    common = (B * kh * nqb, cfg.threads)
    args = (kq, Sk, kh, kg, qa[1], *qk[:3], ka[1], *ka[2][:3], va[1], *va[2][:3])
    smem = cfg.smem_bytes(D)
    if splits == 1:
        kern = forward_kernel(D, qz.dtype.name, cfg, kmode is not None, odt.name, seq_mode, wide)
        kern[(common[0], 1), common[1]](qa[0], ka[0], va[0], oa[0], lse, lens_arg, *args, oa[1], *ok[:3], 0,
                                        c, shift, kps, smem=smem)
    else:
        rows = B * H * Sq
        po = new_like(qz, (splits, rows, D), f32)
        plse = new_like(qz, (splits, rows), f32)
        kern = forward_kernel(D, qz.dtype.name, cfg, kmode is not None, "f32", seq_mode, wide)
        kern[(common[0], splits), common[1]](qa[0], ka[0], va[0], po, plse, lens_arg, *args, 0, H * Sq * D,
                                             kq * D, D, rows * D, c, shift, kps, smem=smem)
        combine_kernel(D, odt.name)[combine_grid(rows, D)](po, plse, oa[0], lse, splits, rows, Sq, H, oa[1],
                                                           *oa[2][:3])
    return (out, lse) if return_lse else out


def reference_attention(q, k, v, causal=False, scale=None, seqlens_k=None):
    """float64 numpy reference: (o [B, H, Sq, D], lse [B, H, Sq]); rows with no key: o = 0, lse = -inf."""
    q64, k64, v64 = (np.asarray(x, np.float64) for x in (q, k, v))
    B, H, Sq, D = q64.shape
    Hkv, Sk = k64.shape[1], k64.shape[2]
    k64 = np.repeat(k64, H // Hkv, axis=1)
    v64 = np.repeat(v64, H // Hkv, axis=1)
    sc = 1.0 / math.sqrt(D) if scale is None else scale
    s = np.einsum("bhqd,bhkd->bhqk", q64, k64) * sc
    rows = np.arange(Sq)[:, None]
    cols = np.arange(Sk)[None, :]
    mode = CAUSAL[causal]
    keep = np.ones((B, 1, Sq, Sk), bool)
    for b in range(B):
        n = Sk if seqlens_k is None else max(min(int(seqlens_k[b]), Sk), 0)
        kb = cols < n
        if mode == "top_left":
            kb = kb & (cols <= rows)
        elif mode == "bottom_right":
            kb = kb & (cols <= rows + n - Sq)
        keep[b, 0] = kb
    s = np.where(keep, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    l = p.sum(axis=-1, keepdims=True)
    o = np.where(l > 0, np.einsum("bhqk,bhkd->bhqd", p, v64) / np.where(l > 0, l, 1.0), 0.0)
    with np.errstate(divide="ignore"):
        lse = np.where(l[..., 0] > 0, m[..., 0] + np.log(np.where(l[..., 0] > 0, l[..., 0], 1.0)), -np.inf)
    return o, lse


def attention_backward(do, q, k, v, o, lse, *, causal=False, scale=None, config=None):
    """The gradients (dq, dk, dv) of ``attention(q, k, v, causal=, scale=)`` given its output ``o``,
    ``lse`` (``return_lse=True``) and the output gradient ``do`` (FlashAttention-2: Dr = rowsum(dO O),
    a dK/dV kernel, a dQ kernel; f32 accumulation; deterministic). dk/dv are [B, Hkv, Sk, D]: with
    GQA each is summed over its group of query heads. No ``seqlens_k`` (full sequences).
    On sm_90a (D 64 or 128, contiguous q/k/v/do) the Hopper kernels of attention_bwd_sm90 run;
    ``config``: a ``BwdConfig`` (the mma.sync kernels, tile sizes; default ``bwd_config(D)``) or an
    ``Sm90BwdConfig`` (the Hopper kernels, an error where they cannot run)."""
    from .attention_bwd import (BwdConfig, bwd_config, dkdv_kernel, dkdv_parts, dkdv_smem, dq_kernel, dq_smem,
                                rowdot_kernel)

    op = "attention_backward"
    qz, kz, vz, B, H, Hkv, Sq, Sk, D = check_qkv(q, k, v, op)
    mode = causal_mode(causal, op)
    sc = softmax_scale(scale, D, op)
    dz, oz = inspect_array("do", do, op), inspect_array("o", o, op)
    for z in (dz, oz):
        require_rank(z, 4, op, "[B, H, Sq, D]")
        require_dtype(z, (qz.dtype,), op)
        if tuple(z.shape) != tuple(qz.shape):
            raise ArgumentError(f"{op}(): '{z.name}' has shape {z.shape}; it must be q's {qz.shape}")
    lz = inspect_array("lse", lse, op)
    require_dtype(lz, (f32,), op)
    if tuple(lz.shape) != (B, H, Sq) or not lz.contiguous:
        raise ArgumentError(f"{op}(): 'lse' must be a contiguous f32 [B, H, Sq] = {(B, H, Sq)} (attention(..., "
                            f"return_lse=True) gives it), got shape {lz.shape} strides {lz.strides}")
    same_kind(op, qz, dz, oz, lz)
    from . import attention_bwd_sm90 as sm90

    if config is not None and not isinstance(config, (BwdConfig, sm90.Sm90BwdConfig)):
        raise ArgumentError(f"{op}(): config={config!r}: expected a kaiodsl.ops.BwdConfig, a "
                            f"kaiodsl.ops.Sm90BwdConfig or None")
    use_sm90 = sm90.takes_sm90(config, (qz, kz, vz, dz), D, op)
    cfg = config if isinstance(config, BwdConfig) else bwd_config(D)
    cfg.check(op)
    if not use_sm90:
        require_smem(op, f"config {cfg}", max(dkdv_smem(D, cfg), dq_smem(D, cfg)))
    qa, ka, va = operand(qz, op), operand(kz, op), operand(vz, op)
    da, oa = operand(dz, op), operand(oz, op)
    if B * H * Sq == 0 or Sk == 0:          # no score: every gradient is 0
        return tuple(zeros_like(qz, s, qz.dtype) for s in ((B, H, Sq, D), (B, Hkv, Sk, D), (B, Hkv, Sk, D)))
    dq = new_like(qz, (B, H, Sq, D), qz.dtype)
    dk = new_like(qz, (B, Hkv, Sk, D), qz.dtype)
    dv = new_like(qz, (B, Hkv, Sk, D), qz.dtype)
    rows = B * H * Sq
    dr = new_like(qz, (B, H, Sq), f32)
    rowdot_kernel(D, qz.dtype.name)[(rows + 3) // 4, 128](da[0], oa[0], dr, rows, Sq, H, da[1], *da[2][:3],
                                                          oa[1], *oa[2][:3])
    if use_sm90:
        sm90.launch(qa[0], ka[0], va[0], da[0], lse, dr, dq, dk, dv, qz.dtype.name, B, H, Hkv, Sq, Sk, D, mode, sc,
                    sc * LOG2E, qz, config)
        return dq, dk, dv
    shift = Sk - Sq if mode == "bottom_right" else 0
    args = (Sq, Sk, H, H // Hkv, qa[1], *qa[2][:3], ka[1], *ka[2][:3], va[1], *va[2][:3], da[1], *da[2][:3],
            sc * LOG2E, sc, shift)
    for part in dkdv_parts(D):
        kv = dkdv_kernel(D, qz.dtype.name, cfg, mode is not None, part)
        kv[B * Hkv * ((Sk + cfg.bkv - 1) // cfg.bkv), cfg.bkv * 2](qa[0], ka[0], va[0], da[0], lse, dr, dk, dv,
                                                                    *args, smem=dkdv_smem(D, cfg))
    kq = dq_kernel(D, qz.dtype.name, cfg, mode is not None)
    kq[B * H * ((Sq + cfg.bq - 1) // cfg.bq), cfg.bq * 2](qa[0], ka[0], va[0], da[0], lse, dr, dq, *args,
                                                           smem=dq_smem(D, cfg))
    return dq, dk, dv


def reference_attention_backward(do, q, k, v, causal=False, scale=None):
    """float64 numpy gradients (dq, dk, dv) of reference_attention; GQA dk/dv summed over each group."""
    q64, k64, v64, do64 = (np.asarray(x, np.float64) for x in (q, k, v, do))
    B, H, Sq, D = q64.shape
    Hkv, Sk = k64.shape[1], k64.shape[2]
    g = H // Hkv
    kr, vr = np.repeat(k64, g, axis=1), np.repeat(v64, g, axis=1)
    sc = 1.0 / math.sqrt(D) if scale is None else scale
    o, lse = reference_attention(q64, k64, v64, causal, scale)
    s = np.einsum("bhqd,bhkd->bhqk", q64, kr) * sc
    with np.errstate(invalid="ignore"):
        p = np.where(np.isfinite(lse)[..., None], np.exp(s - np.where(np.isfinite(lse), lse, 0)[..., None]), 0.0)
    rows, cols = np.arange(Sq)[:, None], np.arange(Sk)[None, :]
    mode = CAUSAL[causal]
    if mode:
        p = np.where(cols <= rows + (Sk - Sq if mode == "bottom_right" else 0), p, 0.0)
    dv = np.einsum("bhqk,bhqd->bhkd", p, do64)
    dp = np.einsum("bhqd,bhkd->bhqk", do64, vr)
    dr = (do64 * o).sum(-1, keepdims=True)
    ds = p * (dp - dr)
    dq = np.einsum("bhqk,bhkd->bhqd", ds, kr) * sc
    dk = np.einsum("bhqk,bhqd->bhkd", ds, q64) * sc
    return dq, dk.reshape(B, Hkv, g, Sk, D).sum(2), dv.reshape(B, Hkv, g, Sk, D).sum(2)
