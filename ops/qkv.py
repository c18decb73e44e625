"""Fused QKV projections: ``qkv_project`` (f16/bf16 weights), ``qkv_project_int8`` (W8A16) and
``qkv_project_int4`` (W4A16). Each returns ``(q, k, v)`` from one launch (ops/qkv_kernels.py).

``x`` is [M, hidden] or [B, S, hidden] (f16/bf16); the weights are the three ``nn.Linear`` matrices
[N_q, hidden], [N_kv, hidden], [N_kv, hidden] (GQA: N_q = H D, N_kv = H_kv D): f16/bf16 like x,
int8 with per-channel scales ``sq, sk, sv`` ([N] f16/bf16/f32), or int4 in ``pack_int4``'s layout
with per-group scales [N, hidden / group_size] (x's dtype) and optional uint8 ``zeros`` (a triple),
e.g. from ``from_gptq`` per projection. Options, shared by the three:

* ``bias=(bq, bk, bv)``: [N] vectors added in f32.
* ``layout="mn"``: q [M, N_q] (or [B, S, N_q] for 3-D x); ``"bhsd"``: q [B, H, S, D], k and v
  [B, H_kv, S, D] (the attention op's input), ``head_dim=D`` required; the sequence length is x's S
  or ``seq_len=`` for 2-D x (M must be a multiple of it).
* ``rope=(cos, sin)``: f32 tables [P, D / 2] (angle i of each rotated pair) applied to q and k in the
  epilogue, ``rope_style="rotate_half"`` (Llama: pairs (i, i + D/2)) or ``"interleaved"`` (GPT-J:
  pairs (2i, 2i + 1)); rows take ``positions`` (int32 [M] or [B, S]) or by default their index in
  the sequence. Positions must lie in [0, P) (not checked on the device).
* ``out_dtype``: f16/bf16/f32 (default x's).

``qkv_choice`` says which kernel runs: on sm_90a past M = 16 one launch of the Hopper GEMM (f16/bf16
weights) or of a dequantizing W4A16/W8A16 GEMM (int8/int4: the swap-AB kernel of ops/gemm_sm90_w4_swap.py
without a rope, ops/gemm_sm90_w4.py with one past M = 64), both through ops/qkv_sm90.py, when the
projections fit its tiles; else ops/qkv_kernels.py.
"""


import numpy as np

from kaiodsl import bf16, f16, f32, i32, i8, tuning, u8, u32
from kaiodsl.errors import ArgumentError

from . import matmul_int4_tiled as i4t
from . import qkv_sm90
from ._common import (data_alignment, inspect_array, new_like, require_contiguous, require_dtype,
                      require_i32_sizes, require_rank, same_kind)
from .gemm_sm90 import Sm90Config
from .gemm_sm90_w4 import W4Config
from .gemm_sm90_w4_swap import W4SwapConfig
from .matmul import GemmConfig, _dtype_name, block_gemm, dummy_f32, needs_wide, row_granule
from .matmul_w8a16 import _vec_f32
from .qkv_kernels import QkvPlan, qkv_kernel
from .decode_gemm import DecodeConfig, DecodeGemm, decode_exact
from .matmul_decode import check_decode_config, split_buffers
from .gemm_sm90 import sm_count
from .w8_gemm import W8Config, W8Gemm

BLOCK_N = 128       # every QKV config's block width: rotate_half needs whole heads in a block (D | 128)
F16_CONFIGS = (DecodeConfig(4, 4, 4, 2), GemmConfig(64, 128, 32, 2, 2, 4), GemmConfig(128, 128, 32, 2, 4, 4))
W8_CONFIGS = (DecodeConfig(4, 4, 4, 2), W8Config(64, 128, 64, 2, 2, 4), W8Config(128, 128, 64, 2, 4, 3))
I4_CONFIGS = (DecodeConfig(4, 4, 4, 1), i4t.Int4Config(64, 4, 4, 3), i4t.Int4Config(128, 8, 2, 3))
STYLES = ("rotate_half", "interleaved")


def qkv_config(kind: str, M: int, K: int = 0, style: str = "", N: int = 0):
    """The main-loop config for M rows (decode <= 16: the K-split weight stream for int8/int4, <= 512, larger).

    Decode with int8/int4 weights and no rotate_half rope takes 16- to 64-column blocks (int8: the
    standalone decode GEMM's 32; int4: below): 128-column blocks give a Llama-3-8B projection (6144
    columns) 48 blocks for 132 SMs (ncu on the H200, int4 at M = 1: 15 % of DRAM bandwidth). rotate_half
    keeps 128 (whole heads a block)."""
    table = {"f16": F16_CONFIGS, "int8": W8_CONFIGS, "int4": I4_CONFIGS}[kind]
    if kind == "int8" and M <= 16 and K % 64:       # the decode stream reads 64 (f16: 32) k a load
        return W8Config(16, 128, 64, 1, 4, 4)
    if kind == "f16" and M <= 16 and K % 32:
        return GemmConfig(16, 128, 64, 1, 4, 4)
    if M <= 16 and kind != "f16" and style != "rotate_half":
        if kind == "int8":
            from .matmul_w8a16 import DECODE
            return DECODE
        # int4: up to M = 8, 64-column blocks with late_scale (Llama-3-8B at M 1 / 4: 9.0 / 9.1 us, 3.06x /
        # 3.08x three cuBLAS, against 9.7 / 9.5 us for matmul_int4's (1, 8, 4, 2), logs/decode_int4_late_
        # 2026-12-03.log; 70B-like: 25.1 us, on par); past it 16-column blocks (M 16: 8.9 us, 3.20x; 70B-like
        # 25.6 us, 2.11x, against 28.1 us for 32 columns, logs/decode_int4_late_2026-12-03b.log). H200, timed
        # over one weight buffer (bench_qkv's rotated buffers: 2.53x / 2.54x / 3.13x at 8B M 1 / 4 / 16)
        return DecodeConfig(2, 4, 4, 2, late_scale=True) if M <= 8 else DecodeConfig(1, 8, 2, 2)
    if kind == "int4" and 16 < M <= 64 and style != "rotate_half":
        # 32-row, 64-column blocks (2x the blocks of 128 columns): 1.40x three cuBLAS at M 32 for Llama-3-8B
        # and 0.87x / 0.73x at M 32 / 64 for the 70B-like shape, against 0.57-0.69x (H200, qkv_midm_sweep)
        return i4t.Int4Config(32, 4, 2, 3)
    if kind == "int8" and 16 < M <= 64 and style != "rotate_half" and 0 < -(-N // 64) <= sm_count():
        # 64-column blocks where they are one wave (Llama-3-8B: 96): 0.89x / 0.84x three cuBLAS at M 32 / 64,
        # against 0.73x / 0.68x for the dequantizing sm_90a kernel's 64 x 64 tiles (H200, qkv_midm_sweep)
        return W8Config(64, 64, 64, 2, 2, 4)
    return table[0] if M <= 16 else table[1] if M <= 512 else table[2]


def qkv_choice(kind: str, M: int, K: int, Nq: int, Nkv: int, head_dim: int = 0, rope_style: str = "",
               rows_aligned: bool = True, config=None) -> tuning.Choice:
    """The config the op runs for these sizes and why (``.config``, ``.source``): ``config`` when given;
    on sm_90a past M = 16 one launch of the Hopper GEMM (f16/bf16 weights: an Sm90Config,
    ``qkv_sm90.pick``) or of a dequantizing one (int8/int4: a W4SwapConfig or, with a rope past M = 64, a
    W4Config; ``qkv_sm90.pick_quant``) when
    the projections fit its tiles; else ``qkv_config``'s mma.sync kernel config. ``rows_aligned``: x
    (and the weights the kernel reads 16 bytes at a time) on 16-byte boundaries."""
    if config is not None:
        return tuning.Choice(config, "given")
    if kind == "f16":
        cfg, why = qkv_sm90.pick(M, K, Nq, Nkv, head_dim, rope_style or "", rows_aligned)
        if cfg is not None:
            return tuning.Choice(cfg, "heuristic: one sm_90a launch, TMA + wgmma over q, k, v segments "
                                      "(ops/qkv_sm90.py)")
    else:
        cfg, why = qkv_sm90.pick_quant(kind, M, K, Nq, Nkv, head_dim, rope_style or "", 16 if rows_aligned else 0)
        if cfg is not None:
            where = "wgmma's A registers (ops/gemm_sm90_w4_swap.py)" if isinstance(cfg, W4SwapConfig) else \
                "shared memory (ops/gemm_sm90_w4.py)"
            return tuning.Choice(cfg, f"heuristic: one sm_90a launch, {kind} weights dequantized into {where} + "
                                      f"wgmma over q, k, v segments")
    return tuning.Choice(qkv_config(kind, M, K, rope_style or "", Nq + 2 * Nkv),
                         f"heuristic: the mma.sync QKV kernel (ops/qkv_kernels.py); not sm_90a's: {why}")


def _x(op, x):
    xz = inspect_array("x", x, op)
    if len(xz.shape) not in (2, 3):
        raise ArgumentError(f"{op}(): 'x' must be [M, hidden] or [B, S, hidden], got shape {xz.shape}")
    require_dtype(xz, (f16, bf16), op)
    require_contiguous(xz, op)
    return xz


def _weights(op, kind, xz, ws, K):
    """(N_q, N_kv, Arrs) of the three weight matrices."""
    names = ("wq", "wk", "wv")
    Ns, arrs = [], []
    for name, w in zip(names, ws):
        wz = inspect_array(name, w, op)
        if kind == "int4":
            require_dtype(wz, (i32, u32), op)
            if len(wz.shape) != 4 or wz.shape[2:] != (32, 4) or wz.shape[1] * 128 != K:
                raise ArgumentError(f"{op}(): '{name}' must have the pack_int4 layout [N // 8, K // 128, 32, 4] "
                                    f"with K={K} (x's hidden size, a multiple of 128), got shape {wz.shape}")
            n = wz.shape[0] * 8
        else:
            require_rank(wz, 2, op, "a matrix [N, hidden]")
            require_dtype(wz, (xz.dtype,) if kind == "f16" else (i8,), op)
            if wz.shape[1] != K:
                raise ArgumentError(f"{op}(): x has hidden={K} but '{name}' [N, hidden] is {wz.shape}")
            n = wz.shape[0]
        require_contiguous(wz, op)
        if n % 2 or n == 0:
            raise ArgumentError(f"{op}(): '{name}' has N={n} rows; N must be positive and even")
        Ns.append(n)
        arrs.append(wz)
    if Ns[1] != Ns[2]:
        raise ArgumentError(f"{op}(): 'wk' and 'wv' must have the same N (H_kv * D), got {Ns[1]} and {Ns[2]}")
    if len({str(a.dtype) for a in arrs}) != 1:
        raise ArgumentError(f"{op}(): wq, wk, wv must share one dtype, got {[str(a.dtype) for a in arrs]}")
    return Ns[0], Ns[1], arrs


def _triple(op, name, t):
    if not isinstance(t, (tuple, list)) or len(t) != 3:
        raise ArgumentError(f"{op}(): '{name}' must be a triple (q, k, v) or None, got {type(t).__name__}")
    return t


def _layout(op, layout, xz, M, Nq, Nkv, head_dim, seq_len, rope):
    """(S, D) after checking the layout/rope/head_dim/seq_len combination."""
    if layout not in ("mn", "bhsd"):
        raise ArgumentError(f"{op}(): layout must be 'mn' or 'bhsd', got {layout!r}")
    need_d = layout == "bhsd" or rope is not None
    D = head_dim or 0
    if need_d:
        if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
            raise ArgumentError(f"{op}(): head_dim must be a positive even int with layout='bhsd' or rope, "
                                f"got {head_dim!r}")
        if Nq % D or Nkv % D:
            raise ArgumentError(f"{op}(): N_q={Nq} and N_kv={Nkv} must be multiples of head_dim={D}")
    if len(xz.shape) == 3:
        S = xz.shape[1]
        if seq_len is not None and seq_len != S:
            raise ArgumentError(f"{op}(): seq_len={seq_len} but x is [B, S, hidden] = {xz.shape}")
    elif seq_len is not None:
        if not isinstance(seq_len, int) or seq_len <= 0 or M % seq_len:
            raise ArgumentError(f"{op}(): seq_len must be a positive int dividing M={M}, got {seq_len!r}")
        S = seq_len
    elif layout == "bhsd":
        raise ArgumentError(f"{op}(): layout='bhsd' with 2-D x [M, hidden] needs seq_len= (x as [B, S, hidden] "
                            f"gives it)")
    else:
        S = max(M, 1)
    return S, D


def _rope(op, rope, style, positions, xz, D, M):
    if rope is None:
        if positions is not None:
            raise ArgumentError(f"{op}(): positions= is only used with rope=(cos, sin)")
        return None
    if style not in STYLES:
        raise ArgumentError(f"{op}(): rope_style must be one of {STYLES}, got {style!r}")
    if style == "rotate_half" and BLOCK_N % D:
        raise ArgumentError(f"{op}(): rope_style='rotate_half' needs head_dim to divide {BLOCK_N} (a block holds "
                            f"whole heads), got head_dim={D}")
    if not isinstance(rope, (tuple, list)) or len(rope) != 2:
        raise ArgumentError(f"{op}(): rope must be a pair (cos, sin) of [P, head_dim // 2] tables, got "
                            f"{type(rope).__name__}")
    tabs = []
    for name, t in zip(("cos", "sin"), rope):
        tz = inspect_array(f"rope {name}", t, op)
        require_rank(tz, 2, op, "a table [P, head_dim // 2]")
        require_dtype(tz, (f32,), op)
        if tz.shape[1] != D // 2:
            raise ArgumentError(f"{op}(): rope {name} must be [P, head_dim // 2] = [P, {D // 2}], got {tz.shape}")
        require_contiguous(tz, op)
        same_kind(op, xz, tz)
        tabs.append(tz)
    if tabs[0].shape != tabs[1].shape:
        raise ArgumentError(f"{op}(): rope cos {tabs[0].shape} and sin {tabs[1].shape} differ")
    if positions is not None:
        pz = inspect_array("positions", positions, op)
        require_dtype(pz, (i32,), op)
        if int(np.prod(pz.shape)) != M:
            raise ArgumentError(f"{op}(): positions must have M={M} elements ([M] or [B, S]), got {pz.shape}")
        require_contiguous(pz, op)
        same_kind(op, xz, pz)
        if pz.kind == "numpy" and M and (pz.obj.min() < 0 or pz.obj.max() >= tabs[0].shape[0]):
            raise ArgumentError(f"{op}(): positions must lie in [0, {tabs[0].shape[0]}) (the tables' rows), got "
                                f"{pz.obj.min()}..{pz.obj.max()}")
    return style


def _project(op, kind, x, ws, quant, *, bias, layout, head_dim, seq_len, rope, rope_style, positions,
             out_dtype, config, group_size=0, zeros=None):
    xz = _x(op, x)
    K = xz.shape[-1]
    M = int(np.prod(xz.shape[:-1]))
    Nq, Nkv, wzs = _weights(op, kind, xz, ws, K)
    same_kind(op, xz, *wzs)
    if kind == "f16" and K % 8:
        raise ArgumentError(f"{op}(): hidden={K} must be a multiple of 8 (16-byte rows)")
    if kind == "int8" and K % 16:
        raise ArgumentError(f"{op}(): hidden={K} must be a multiple of 16 (int8 rows copied in 16-byte pieces)")
    if K == 0:
        raise ArgumentError(f"{op}(): hidden=0: nothing to compute")
    qargs = quant
    if kind == "int8":
        qargs = tuple(_vec_f32(s, xz, n, op, name) for s, n, name in zip(quant, (Nq, Nkv, Nkv), ("sq", "sk", "sv")))
    elif kind == "int4":
        if group_size not in (32, 64, 128):
            raise ArgumentError(f"{op}(): group_size must be 32, 64 or 128, got {group_size!r}")
        if K % group_size:
            raise ArgumentError(f"{op}(): hidden={K} must be a multiple of group_size={group_size}")
        for s, n, name in zip(quant, (Nq, Nkv, Nkv), ("sq", "sk", "sv")):
            sz = inspect_array(name, s, op)
            require_dtype(sz, (xz.dtype,), op)
            if sz.shape != (n, K // group_size):
                raise ArgumentError(f"{op}(): '{name}' must be [N, hidden // group_size] = {(n, K // group_size)}, "
                                    f"got {sz.shape}")
            require_contiguous(sz, op)
            same_kind(op, xz, sz)
        if zeros is not None:
            for z, n, name in zip(_triple(op, "zeros", zeros), (Nq, Nkv, Nkv), ("zeros[q]", "zeros[k]", "zeros[v]")):
                zz = inspect_array(name, z, op)
                require_dtype(zz, (u8,), op)
                if zz.shape != (n, K // group_size):
                    raise ArgumentError(f"{op}(): '{name}' must be uint8 [N, hidden // group_size] = "
                                        f"{(n, K // group_size)}, got {zz.shape}")
                require_contiguous(zz, op)
                same_kind(op, xz, zz)
    biases = None
    if bias is not None:
        from .matmul import _bias_f32

        biases = tuple(_bias_f32(b, xz, n, op) for b, n in zip(_triple(op, "bias", bias), (Nq, Nkv, Nkv)))
    S, D = _layout(op, layout, xz, M, Nq, Nkv, head_dim, seq_len, rope)
    style = _rope(op, rope, rope_style, positions, xz, D, M)
    out_name = _dtype_name(out_dtype, xz.dtype.name)
    if out_name not in ("f16", "bf16", "f32"):
        raise ArgumentError(f"{op}(): out_dtype must be f32, f16 or bf16, got {out_dtype!r}")
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    T = xz.dtype
    x2 = qkv_sm90.two_d(x, M, K)
    if kind == "f16":
        aligned = x2 is not None and not any(row_granule(K, 2, data_alignment(a)) for a in (xz, *wzs))
    else:       # TMA reads x and stages the weights (int8 rows, int4 packed words)
        align = min(data_alignment(a) for a in (xz, *wzs)) if x2 is not None else 0
        aligned = align >= 16
    cfg = qkv_choice(kind, M, K, Nq, Nkv, D, style, aligned, config).config
    if isinstance(cfg, Sm90Config):
        if kind != "f16":
            raise ArgumentError(f"{op}(): config {cfg} is the f16/bf16 weights' sm_90a kernel; use config=None")
        cfg = qkv_sm90.checked(op, cfg, K, Nq, Nkv, D, style, aligned)
        require_i32_sizes(op, M=M, N=Nq + 2 * Nkv, K=K)
        outs = _outputs(xz, layout, M, S, D, (Nq, Nkv, Nkv), OUT)
        if M == 0:
            return outs
        return qkv_sm90.launch(x2, ws, outs, M, K, Nq, Nkv, cfg, T.name, OUT, biases, layout == "bhsd",
                               S, D, style, rope, positions, dummy_f32(xz))
    if isinstance(cfg, (W4Config, W4SwapConfig)):
        if kind == "f16":
            raise ArgumentError(f"{op}(): config {cfg} is the int8/int4 weights' sm_90a kernel; use config=None")
        cfg = qkv_sm90.checked_quant(op, cfg, M, K, Nq, Nkv, D, style, align)
        require_i32_sizes(op, M=M, N=Nq + 2 * Nkv, K=K)
        outs = _outputs(xz, layout, M, S, D, (Nq, Nkv, Nkv), OUT)
        if M == 0:
            return outs
        has_z = kind == "int4" and zeros is not None
        _, gs, zs = _quant_slots(kind, xz, x, qargs, zeros)
        quant = qkv_sm90.QuantWeights(kind, group_size if kind == "int4" else 0, has_z, wzs[0].dtype.name,
                                      qargs if kind == "int8" else (), gs, zs)
        return qkv_sm90.launch(x2, ws, outs, M, K, Nq, Nkv, cfg, T.name, OUT, biases, layout == "bhsd",
                               S, D, style, rope, positions, dummy_f32(xz), quant)
    wide = needs_wide(M, max(Nq, Nkv), K)
    if isinstance(cfg, DecodeConfig):
        unit = {"f16": 32, "int8": 64, "int4": 128}[kind]
        if K % unit:
            raise ArgumentError(f"{op}(): a DecodeConfig needs hidden={K} to be a multiple of {unit}")
        check_decode_config(op, cfg, True, K, unit, M > 8)
        G = DecodeGemm(cfg, T, kind, group_size if kind == "int4" else 0, zeros is not None, M > 8,
                       decode_exact(cfg, K, unit))
        smem = cfg.smem_bytes(a_bytes=cfg.a_bytes(K, unit, M > 8))
    elif kind == "f16":
        cfg.check(2)
        G, smem = block_gemm(cfg, T, True, T.name, wide), cfg.smem_bytes(2)
    elif kind == "int8":
        G, smem = W8Gemm(cfg, T, 0, wide), cfg.smem_bytes()
    else:
        G, smem = i4t.Int4Gemm(cfg, T, group_size, zeros is not None, wide), cfg.smem_bytes()
    bm = cfg.block_m
    bn = cfg.block_n
    threads = cfg.threads
    if bn != BLOCK_N and style == "rotate_half" and bn % D:
        raise ArgumentError(f"{op}(): config block_n={bn} must be a multiple of head_dim={D} for rotate_half")
    if style == "rotate_half":
        smem = max(smem, bm * bn * 4)
    plan = QkvPlan(kind, G, OUT, layout == "bhsd", D, style or "", biases is not None, positions is not None,
                   bm, bn, threads)
    outs = _outputs(xz, layout, M, S, D, (Nq, Nkv, Nkv), OUT)
    if M == 0:
        return outs
    f32d = dummy_f32(xz)
    sc, gs, zs = _quant_slots(kind, xz, x, qargs, zeros)
    bs = biases or (f32d,) * 3
    if style:
        cos, sin = rope
        pos = positions if positions is not None else new_like(xz, (1,), i32)
    else:
        cos = sin = f32d
        pos = new_like(xz, (1,), i32)
    nbq, nbk = -(-Nq // bn), -(-Nkv // bn)
    k = qkv_kernel(plan, wzs[0].dtype.name)
    grid = (nbq + 2 * nbk, -(-M // bm), cfg.splits if plan.decode else 1)
    if plan.decode:
        split = split_buffers(xz, cfg, grid[0] * grid[1])
    else:
        split = (f32d, new_like(xz, (1,), i32))
    k[grid, threads](x, *ws, *sc, *gs, *zs, *bs, *outs, cos, sin, pos, *split, M, Nq, Nkv, K, S, nbq, nbk,
                     smem=smem)
    return tuple(outs)


def _quant_slots(kind, xz, x, qargs, zeros) -> tuple:
    """(per-channel f32 scales, group scales, zero points) of q, k, v, placeholders where the kind has none."""
    sc = qargs if kind == "int8" else (dummy_f32(xz),) * 3
    gs = qargs if kind == "int4" else (x,) * 3
    zs = tuple(zeros) if kind == "int4" and zeros is not None else (new_like(xz, (1,), u8),) * 3
    return sc, gs, zs


def _outputs(xz, layout, M, S, D, Ns, OUT) -> tuple:
    """q, k, v allocated as the layout lays them out (nothing before this allocated or launched)."""
    if layout == "bhsd":
        shapes = [(M // S, n // D, S, D) for n in Ns]
    else:
        shapes = [xz.shape[:-1] + (n,) for n in Ns]
    return tuple(new_like(xz, sh, OUT) for sh in shapes)


_OPTS = dict(bias=None, layout="mn", head_dim=None, seq_len=None, rope=None, rope_style="rotate_half",
             positions=None, out_dtype=None, config=None)


def _opts(op, kw):
    bad = set(kw) - set(_OPTS)
    if bad:
        raise ArgumentError(f"{op}(): unknown keyword(s) {sorted(bad)}; allowed: {sorted(_OPTS)}")
    return {**_OPTS, **kw}


def qkv_project(x, wq, wk, wv, **kw):
    """(x @ wq.T, x @ wk.T, x @ wv.T) in one launch (f16/bf16 weights; see the module doc for options)."""
    return _project("qkv_project", "f16", x, (wq, wk, wv), (), **_opts("qkv_project", kw))


def qkv_project_int8(x, wq, wk, wv, sq, sk, sv, **kw):
    """W8A16 QKV: int8 [N, hidden] weights with per-channel scales sq, sk, sv (see the module doc)."""
    return _project("qkv_project_int8", "int8", x, (wq, wk, wv), (sq, sk, sv), **_opts("qkv_project_int8", kw))


def qkv_project_int4(x, wq, wk, wv, sq, sk, sv, *, zeros=None, group_size: int = 128, **kw):
    """W4A16 QKV: pack_int4 weights, per-group scales sq, sk, sv, optional zeros=(zq, zk, zv)."""
    return _project("qkv_project_int4", "int4", x, (wq, wk, wv), (sq, sk, sv), group_size=group_size,
                    zeros=zeros, **_opts("qkv_project_int4", kw))


def reference_qkv(x, wq, wk, wv, bias=None, layout="mn", head_dim=None, seq_len=None, rope=None,
                  rope_style="rotate_half", positions=None):
    """float64 reference from float weights [N, hidden] (already dequantized): (q, k, v) as the ops lay
    them out."""
    x = np.asarray(x, np.float64)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    M = x2.shape[0]
    S = x.shape[1] if x.ndim == 3 else (seq_len or M)
    outs = []
    for n, w in enumerate((wq, wk, wv)):
        y = x2 @ np.asarray(w, np.float64).T
        if bias is not None:
            y = y + np.asarray(bias[n], np.float64)
        if rope is not None and n < 2:
            D = head_dim
            cos, sin = (np.asarray(t, np.float64) for t in rope)
            pos = np.arange(M) % S if positions is None else np.asarray(positions).reshape(-1)
            c, s = cos[pos], sin[pos]                     # [M, D / 2]
            y = y.reshape(M, -1, D)
            if rope_style == "rotate_half":
                a, b = y[..., :D // 2], y[..., D // 2:]
                y = np.concatenate([a * c[:, None] - b * s[:, None], b * c[:, None] + a * s[:, None]], -1)
            else:
                a, b = y[..., 0::2], y[..., 1::2]
                y = np.stack([a * c[:, None] - b * s[:, None], b * c[:, None] + a * s[:, None]], -1)
            y = y.reshape(M, -1)
        if layout == "bhsd":
            D = head_dim
            y = y.reshape(M // S, S, -1, D).transpose(0, 2, 1, 3)
        else:
            y = y.reshape(lead + (-1,))
        outs.append(y)
    return tuple(outs)
