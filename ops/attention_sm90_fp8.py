"""fp8 (e4m3) flash-attention forward on sm_90a: ``ops.attention(q, k, v, descale=(dq, dk, dv), ...)``.

FlashAttention-3's fp8 forward (Shah et al. 2024, section 3.3) run by the f16/bf16 Hopper kernel's own
producer and consumers (ops/attention_sm90.py with ``Layout(elem="e4m3")``: a TMA producer warpgroup,
two consumer warpgroups of 64 query rows, mbarrier rings for Q, K and V, the overlapped schedule, the
optional ping-pong, the same work units and persistence); this module holds the kernel's entry (the
descales), the V^T prep kernel, validation and the launch. q [B, H, Sq, D], k/v [B, Hkv, Sk, D] are e4m3 whose true values
are ``q * dq``, ``k * dk``, ``v * dv``: per-tensor Python floats, or f32 arrays (one per head: [H] for
dq, [Hkv] for dk/dv; or [1], read on the device). D is 64 or 128.

* S = Q K^T: wgmma e4m3 SS, both K-major. A row of D is D bytes, so Q and K tiles are one swizzled
  column block (the D-byte swizzle: 64 or 128) and one TMA box; a k32 step is 32 bytes of the row.
* softmax: ``tiles.softmax`` in raw units with c = scale * log2(e) * dq * dk (the true scaled score is
  s c / log2(e)), so m, l and the natural-log LSE are those of the true scores.
* O += P V: wgmma e4m3 RS, P in registers. fp8 wgmma takes only K-major B, so V is read as V^T
  [D, keys]; and the 8-bit A fragment (a lane holds k 4t..4t+3, 16+4t..16+4t+3 of its two rows) is not
  where the S accumulator put the lane's columns (8j + 2t + {0, 1}). No shuffles: ``to_a8`` packs each
  lane's own 8 values a row and k32 step, which puts key ``a8_order()[p]`` of each 32-key chunk at k
  index p (p = 4t + i -> key 2t + i for i < 2, 8 + 2t + i - 2 otherwise; +16 for the second half);
  since P V sums over the keys, V^T's keys are stored in that same order. A small prep kernel
  (``vt_kernel``) writes V^T [B, Hkv, D, Sk_pad] so, Sk_pad = Sk rounded up to 32, zeros in the pad (a
  masked P is 0, but 0 x NaN garbage would not be). A V^T tile is ``bn`` keys wide: column blocks
  of W = 128, 64 or 32 bytes (the largest dividing bn), one TMA box and swizzle of W bytes each.
* Epilogue: O dv / l in f16/bf16 (``out_dtype``), f32 LSE [B, H, Sq].

P is rounded to e4m3 (3 mantissa bits) before P V while l sums the f32 p, as FA3 does: the output's
relative error is about 2e-2 (tests/ops/test_attention_fp8.py measures it).
"""

import math
import warnings
from functools import lru_cache

import kaiodsl
from kaiodsl import Ptr, TensorMap, bf16, e4m3, f16, f32, i32, i64, u8, u32
from kaiodsl.errors import ArgumentError

from ._common import data_alignment, inspect_array, is_real, new_like, require_dtype, same_kind, tickets
from .attention_sm90 import (BLOCK_Q, FP8_K, SMEM_LIMIT, THREADS, Layout, Sm90AttnConfig, _attend, _canonical,
                             heads_per_section, rings)

# Row and key indices are i32 (check_qkv bounds S below 2^23); pointer offsets built from them are
# widened to 64 bits before the multiplies (as in attention_sm90).
warnings.filterwarnings("ignore", category=kaiodsl.errors.IndexOverflowWarning,
                        module=r"kaiodsl\.ops\.attention_sm90_fp8$")

OUT_DTYPES = {"bf16": bf16, "f16": f16}
CHUNK = FP8_K              # keys of one k32 step of P V: the unit of V^T's key order
ORDER4 = (0, 1, 8, 9)      # fragments.a8_order of positions 4q .. 4q + 3, less its first key


def smem_bytes(cfg: Sm90AttnConfig, d: int) -> int:
    """Q, then ``stages`` K and ``stages`` V^T slots, one byte an element."""
    return BLOCK_Q * d + 2 * cfg.stages * cfg.bn * d


def default_config(d: int) -> Sm90AttnConfig:
    """192-key tiles at d = 128 and 256 at d = 64, in 2-slot rings, no ping-pong, one block a unit (as
    timed; persistence is not timed for fp8) (120 / 80 KB of shared memory). H200 sweep at S 4096 (bench_attention.py --fp8, TFLOPS non-causal / causal): d 128 k192s2
    764 / 626 against k128s2_pp 722 / 607 and k192s2_pp 735 / 614; d 64 k256s2 503 / 395 against
    k128s2_pp 429 / 379 and k256s2_pp 482 / 402."""
    return Sm90AttnConfig(bn=192 if d == 128 else 256, stages=2, persistent=False)


def layout(d: int, out_name: str, cfg: Sm90AttnConfig, causal: bool) -> Layout:
    """attention_sm90's compile-time shape for e4m3 operands (``out_name``: the output dtype)."""
    return Layout(d, OUT_DTYPES[out_name], cfg, causal, elem="e4m3")


@lru_cache(maxsize=None)
def fp8_attention_kernel(d: int, out_name: str, cfg: Sm90AttnConfig, causal: bool, per_head: bool):
    """attention_sm90's producer and consumers (its ``_produce`` / ``_consume`` with ``Layout.fp8``:
    e4m3 wgmmas, P packed by ``fragments.to_a8``, V^T tiles, the output scaled by dv / l) over the
    same work units; the descales are read per unit where they are per head."""
    OUT = OUT_DTYPES[out_name]
    L = layout(d, out_name, cfg, causal)
    RQ, RK, RV = rings(cfg)
    name = f"attn_fwd_sm90_fp8_d{d}_{out_name}_{cfg}" + ("_causal" if causal else "") + ("_ph" if per_head else "")

    @kaiodsl.kernel(block_size=THREADS, name=name)
    def attn_fwd_sm90_fp8(tq: TensorMap, tk: TensorMap, tv: TensorMap, o: Ptr[OUT], lse: Ptr[f32],
                          sq: Ptr[f32], sk: Ptr[f32], sv: Ptr[f32], Sq: i32, Sk: i32, H: i32, group: i32,
                          c: f32, dv: f32, shift: i32, qstep: i32, kstep: i32, BH: i32, hps: i32,
                          sched: Ptr[i32]):
        smem = kaiodsl.dynamic_shared(u8, align=1024)
        _attend(L, RQ, RK, RV, smem, tq, tk, tv, o, lse, Sq, Sk, H, group, c, shift, BH, hps, sched, per_head, dv, sq,
                sk, sv, qstep, kstep)

    return attn_fwd_sm90_fp8


@lru_cache(maxsize=None)
def vt_kernel(d: int):
    """V [BH, Sk, D] -> V^T [BH, D, Skp] with each 32-key chunk in ``fragments.a8_order`` and zeros past
    Sk; a block of 128 threads moves one chunk of one head through shared memory, 4 bytes a thread
    and access (grid: (Skp / 32, BH)); the chunk's rows are padded by a word in shared memory, so
    the 8 keys a warp reads per D index sit in 8 banks."""
    words = d // 4                                   # u32 words of one V row
    stride = words + 1

    @kaiodsl.kernel(block_size=128, name=f"attn_fp8_vt_d{d}")
    def attn_fp8_vt(v: Ptr[e4m3], vt: Ptr[u8], Sk: i32, Skp: i32):
        tile = kaiodsl.shared_array(u32, (CHUNK * stride,), align=16, name="vchunk")
        tid = kaiodsl.thread_idx.x
        k0 = kaiodsl.block_idx.x * CHUNK
        bh = kaiodsl.block_idx.y
        src = kaiodsl.ptr_cast(v, u32)
        dst = kaiodsl.ptr_cast(vt, u32)
        for r in kaiodsl.static_range(CHUNK * words // 128):
            u = tid + 128 * r
            key = k0 + u // words
            tile[(u // words) * stride + u % words] = kaiodsl.load(src, (i64(bh) * Sk + key) * words + u % words,
                                                                   mask=key < Sk, other=0)
        kaiodsl.syncthreads()
        for r in kaiodsl.static_range(d * CHUNK // 4 // 128):
            u = tid + 128 * r
            row = u // 8                             # the D index: a V^T row holds 8 words of the chunk
            q = u % 8
            kb = 16 * (q // 4) + 2 * (q % 4)         # a8_order of positions 4q .. 4q + 3
            sh = u32(8 * (row % 4))
            out = u32(0)
            for i in kaiodsl.static_range(4):
                key = kb + ORDER4[i]
                out = out | (((tile[key * stride + row // 4] >> sh) & u32(0xFF)) << u32(8 * i))
            dst[(i64(bh) * d + row) * (Skp // 4) + k0 // 4 + q] = out

    return attn_fp8_vt


def padded_keys(Sk: int) -> int:
    return (Sk + CHUNK - 1) // CHUNK * CHUNK


def transpose_v(v, vz, BHkv: int, Sk: int, D: int):
    """V^T [B, Hkv, D, Sk_pad] (u8 codes of e4m3) of a validated contiguous v, keys in a8_order."""
    skp = padded_keys(Sk)
    vt = new_like(vz, tuple(vz.shape[:2]) + (D, skp), u8)
    vt_kernel(D)[(skp // CHUNK, BHkv), 128](v, vt, Sk, skp)
    return vt


def _descale(descale, qz, H: int, Hkv: int, op: str):
    """(per_head, c factor dq dk or 1, dv or 1, (sq, sk, sv) arrays or None, q step, k/v step)."""
    if not (isinstance(descale, (tuple, list)) and len(descale) == 3):
        raise ArgumentError(f"{op}(): descale must be (dq, dk, dv) for fp8 inputs (the true values are q * dq, "
                            f"k * dk, v * dv; (1.0, 1.0, 1.0) for none), got {descale!r}")
    names = ("descale[0] (dq)", "descale[1] (dk)", "descale[2] (dv)")
    if all(is_real(x) for x in descale):
        for n, x in zip(names, descale):
            if not (math.isfinite(float(x)) and 0 < float(x) < 3.0e38):
                raise ArgumentError(f"{op}(): {n} must be a finite positive number, got {x!r}")
        return False, float(descale[0]) * float(descale[1]), float(descale[2]), None, 0, 0
    if any(is_real(x) for x in descale):
        raise ArgumentError(f"{op}(): descale must be three numbers or three f32 arrays, not a mix: got "
                            f"{tuple(type(x).__name__ for x in descale)}")
    steps = []
    for n, x, heads, what in zip(names, descale, (H, Hkv, Hkv), ("H", "Hkv", "Hkv")):
        z = inspect_array(n, x, op)
        require_dtype(z, (f32,), op)
        same_kind(op, qz, z)
        if tuple(z.shape) not in ((heads,), (1,)) or not z.contiguous:
            raise ArgumentError(f"{op}(): {n} has shape {z.shape}; allowed: a contiguous f32 [{what}={heads}] "
                                f"(one per head) or [1]")
        steps.append(1 if z.shape[0] > 1 else 0)
    if steps[1] != steps[2]:
        raise ArgumentError(f"{op}(): descale[1] (dk) and descale[2] (dv) must both be per head [Hkv] or both [1]")
    return True, 1.0, 1.0, tuple(descale), steps[0], steps[1]


def check(qz, kz, vz, oz, out_dtype, lens, num_splits, config, Sk: int, D: int, op: str):
    """The fp8 path's own rules (check_qkv checked the shapes): (output type, config)."""
    from kaiodsl.compiler import default_arch

    arch = default_arch()
    if arch != "sm_90a":
        raise ArgumentError(f"{op}(): fp8 (e4m3) attention runs on the sm_90a kernel only; the target is {arch} "
                            f"(a Hopper GPU, or KAIODSL_ARCH=sm_90a for the simulator)")
    if D not in (64, 128):
        raise ArgumentError(f"{op}(): fp8 attention takes head dim D=64 or 128, got D={D}")
    name = out_dtype.name if hasattr(out_dtype, "name") else out_dtype
    if not (isinstance(name, str) and name in OUT_DTYPES):
        raise ArgumentError(f"{op}(): out_dtype for fp8 inputs must be 'bf16' (default) or 'f16', got {out_dtype!r}")
    if lens is not None or num_splits not in (None, 1):
        raise ArgumentError(f"{op}(): seqlens_k and num_splits are not supported for fp8 inputs, got "
                            f"seqlens_k={'given' if lens is not None else None}, num_splits={num_splits!r}")
    if Sk == 0:
        raise ArgumentError(f"{op}(): fp8 attention needs Sk >= 1 keys, got Sk=0")
    for z in (qz, kz, vz) + ((oz,) if oz is not None else ()):
        if not z.contiguous:
            raise ArgumentError(f"{op}(): fp8 attention needs contiguous [B, H, S, D] arrays; '{z.name}' has "
                                f"strides {z.strides} for shape {z.shape}")
    for z in (qz, kz, vz):
        if data_alignment(z) < 16:
            raise ArgumentError(f"{op}(): '{z.name}' data is {data_alignment(z)}-byte aligned; TMA needs 16 bytes")
    cfg = default_config(D) if config is None else config
    if not isinstance(cfg, Sm90AttnConfig):
        raise ArgumentError(f"{op}(): config for fp8 inputs must be a kaiodsl.ops.Sm90AttnConfig or None, "
                            f"got {config!r}")
    if cfg.bn % CHUNK:
        raise ArgumentError(f"{op}(): config={cfg!r}: fp8 needs bn a multiple of 32 (the k32 step of P V), "
                            f"got bn={cfg.bn}")
    if smem_bytes(cfg, D) > SMEM_LIMIT:
        raise ArgumentError(f"{op}(): config={cfg!r} needs {smem_bytes(cfg, D)} bytes of shared memory at D={D}; "
                            f"at most {SMEM_LIMIT} fit (fewer stages or a smaller bn)")
    return OUT_DTYPES[name], cfg


_DUMMY = {}


def _dummy_f32(like):
    key = (like.kind, str(like.device))
    if key not in _DUMMY:
        _DUMMY[key] = new_like(like, (1,), f32)
    return _DUMMY[key]


def launch(q, k, v, vz, out, lse, out_name: str, B: int, H: int, Hkv: int, Sq: int, Sk: int, D: int,
           causal_mode, c: float, descale, cfg: Sm90AttnConfig, qz):
    """V^T, then the kernel, on validated operands; ``c`` = scale * log2(e); ``descale`` as _descale gives."""
    per_head, cqk, dv, arrays, qstep, kstep = descale
    vt = transpose_v(_canonical(v), vz, B * Hkv, Sk, D)
    q, k = _canonical(q), _canonical(k)
    L = layout(D, out_name, cfg, causal_mode is not None)
    tq = TensorMap(q, (1, 1, 64, D), swizzle=D)
    tk = TensorMap(k, (1, 1, cfg.bn, D), swizzle=D, l2_promotion=256)
    tv = TensorMap(vt, (1, 1, D, L.vw), swizzle=L.vw, l2_promotion=256)
    shift = Sk - Sq if causal_mode == "bottom_right" else 0
    sq, sk, sv = arrays if per_head else (_dummy_f32(qz),) * 3
    kern = fp8_attention_kernel(D, out_name, cfg, causal_mode is not None, per_head)
    units = B * H * ((Sq + BLOCK_Q - 1) // BLOCK_Q)
    from .gemm_sm90 import sm_count
    grid = min(units, sm_count()) if cfg.persistent else units
    kern[grid, THREADS](tq, tk, tv, out, lse, sq, sk, sv, Sq, Sk, H, H // Hkv, c * cqk, dv, shift, qstep, kstep,
                        B * H, heads_per_section(Sk, D, 1), tickets(qz, 2), smem=smem_bytes(cfg, D))
    return out


def attention_fp8(q, k, v, causal, scale, descale, return_lse, out, seqlens_k, num_splits, out_dtype, config, op):
    """ops.attention with ``descale``: everything is validated before anything is allocated or launched."""
    from .attention import LOG2E, _out, _seqlens, causal_mode, check_qkv, softmax_scale

    qz, kz, vz, B, H, Hkv, Sq, Sk, D = check_qkv(q, k, v, op, dtypes=(e4m3,))
    mode = causal_mode(causal, op)
    sc = softmax_scale(scale, D, op)
    lens = _seqlens(seqlens_k, qz, B, op)
    odt, cfg = check(qz, kz, vz, None, "bf16" if out_dtype is None else out_dtype, lens, num_splits, config, Sk,
                     D, op)
    oz = _out(out, qz, odt, op)
    if oz is not None and not oz.contiguous:
        raise ArgumentError(f"{op}(): 'out' must be contiguous [B, H, Sq, D], got strides {oz.strides}")
    ds = _descale(descale, qz, H, Hkv, op)
    if B * Hkv >= 65536:
        raise ArgumentError(f"{op}(): B * Hkv = {B * Hkv} must be below 65536 (the V^T kernel's grid)")
    if out is None:
        out = new_like(qz, (B, H, Sq, D), odt)
    lse = new_like(qz, (B, H, Sq), f32)
    if B * H * Sq == 0:
        return (out, lse) if return_lse else out
    launch(q, k, v, vz, out, lse, odt.name, B, H, Hkv, Sq, Sk, D, mode, sc * LOG2E, ds, cfg, qz)
    return (out, lse) if return_lse else out
