"""The packed int4 weight layout of ``matmul_int4`` (W4A16), and how to build it.

Weights are the ``nn.Linear`` matrix ``W [N, K]`` quantized per group of
``group_size`` consecutive k: ``W[n, k] = (q[n, k] - zero[n, g]) * scale[n, g]`` with
``q`` in 0..15, ``g = k // group_size`` and ``zero = 8`` unless zero points are given.

Packed layout (``w_packed``: int32, shape ``[N // 8, K // 128, 32, 4]``, C order): the
matrix is cut into tiles of 8 rows by 128 columns; in tile ``(i, jj)`` lane ``l`` of the
consuming warp (``g = l // 4``, ``t = l % 4``) owns 4 words -- one 16-byte load -- and
word ``w`` holds the 8 consecutive weights ``W[8i + g, 128jj + 32w + 8t + (0..7)]``.
The kernel feeds them to ``mma.m16n8k16`` as the B operand of two k16 steps. The mma's
k order inside each 32-wide chunk is a permutation of the true k (the dot product does
not care, as long as A uses the same one), chosen so that the 8 activations a lane needs
per row are contiguous too: one 16-byte load of ``a[m, 32c + 8t .. 32c + 8t + 7]``.

Inside a word the 8 nibbles are interleaved, nibble ``p`` (bits ``4p .. 4p+3``) holding
weight ``ORDER[p]`` with ``ORDER = [0, 2, 4, 6, 1, 3, 5, 7]``, so that
``(word >> 4j) & 0x000F000F`` puts weights ``2j`` and ``2j+1`` in the low and high half:
OR-ed into the mantissa of 1024.0 (f16 0x6400; bf16 128.0, 0x4300) one ``lop3`` gives two
exact ``1024 + q`` halves, and one ``sub`` + one ``mul`` give the weights.
"""

import numpy as np

from kaiodsl.errors import ArgumentError

from ._common import require_int

ORDER = np.array([0, 2, 4, 6, 1, 3, 5, 7])
GROUP_SIZES = (32, 64, 128)     # what matmul_int4 takes


def _host(op: str, name: str, x, kinds: str, what: str) -> np.ndarray:
    """``x`` as a host numpy array whose dtype kind is in ``kinds`` ('iu': integers, 'iuf': numbers)."""
    if x is None:
        raise ArgumentError(f"{op}(): '{name}' is required, got None")
    try:
        arr = np.asarray(x)
    except Exception as e:   # a GPU tensor, a ragged list, ...: say what to pass instead
        raise ArgumentError(f"{op}(): '{name}' must be {what} on the host (numpy, or a CPU tensor); "
                            f"{type(x).__name__} does not convert ({type(e).__name__}: {e})") from None
    if arr.dtype.kind not in kinds:
        raise ArgumentError(f"{op}(): '{name}' must be {what}, got dtype {arr.dtype}")
    return arr


def _require_shape(op: str, name: str, arr: np.ndarray, shape: tuple, what: str) -> None:
    if arr.shape != shape:
        raise ArgumentError(f"{op}(): '{name}' must be {what} = {shape}, got shape {arr.shape}")


def pack_int4(q) -> np.ndarray:
    """Pack an integer matrix ``q [N, K]`` with values 0..15 into the kernel layout
    (int32 ``[N // 8, K // 128, 32, 4]``)."""
    op = "pack_int4"
    q = _host(op, "q", q, "iu", "an integer matrix [N, K] of values 0..15")
    if q.ndim != 2:
        raise ArgumentError(f"{op}(): 'q' must be a matrix [N, K], got shape {q.shape}")
    N, K = q.shape
    if N % 8 or K % 128:
        raise ArgumentError(f"{op}(): 'q' is [N, K] = {q.shape}: N={N} must be a multiple of 8 and K={K} "
                            f"a multiple of 128")
    if q.size and (q.min() < 0 or q.max() > 15):
        raise ArgumentError(f"{op}(): 'q' values must be in 0..15, got {q.min()}..{q.max()}")
    v = q.astype(np.uint32).reshape(N // 8, 8, K // 128, 4, 4, 8)   # [i, g, jj, w, t, j]
    v = v.transpose(0, 2, 1, 4, 3, 5)                                # [i, jj, g, t, w, j]
    word = np.zeros(v.shape[:5], np.uint32)
    for p in range(8):
        word |= v[..., ORDER[p]] << np.uint32(4 * p)
    return np.ascontiguousarray(word.reshape(N // 8, K // 128, 32, 4)).view(np.int32)


def _words(op: str, name: str, x, what: str) -> np.ndarray:
    """Packed 32-bit words (int32 or uint32, as GPTQ and pack_int4 store them) as a uint32 view."""
    w = _host(op, name, x, "iu", what)
    if w.dtype.itemsize != 4:
        raise ArgumentError(f"{op}(): '{name}' must be {what} (int32 or uint32 words), got dtype {w.dtype}; "
                            f"a wider type would be read as two words each")
    return np.ascontiguousarray(w).view(np.uint32)


def unpack_int4(w_packed) -> np.ndarray:
    """Inverse of pack_int4: int32 ``[N // 8, K // 128, 32, 4]`` -> uint8 ``[N, K]``."""
    op = "unpack_int4"
    w = _words(op, "w_packed", w_packed, "the pack_int4 layout [N // 8, K // 128, 32, 4]")
    if w.ndim != 4 or w.shape[2:] != (32, 4):
        raise ArgumentError(f"{op}(): 'w_packed' must have the pack_int4 layout [N // 8, K // 128, 32, 4], "
                            f"got shape {w.shape}")
    ni, nb = w.shape[:2]
    word = w.reshape(ni, nb, 8, 4, 4)                                 # [i, jj, g, t, w]
    v = np.zeros(word.shape + (8,), np.uint8)
    for p in range(8):
        v[..., ORDER[p]] = (word >> np.uint32(4 * p)) & 0xF
    v = v.transpose(0, 2, 1, 4, 3, 5)                                # [i, g, jj, w, t, j]
    return np.ascontiguousarray(v).reshape(ni * 8, nb * 128)


def _require_finite(op: str, name: str, w: np.ndarray) -> None:
    bad = ~np.isfinite(w)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ArgumentError(f"{op}(): '{name}' has {int(bad.sum())} non-finite values (the first, "
                            f"{w[at]}, at {at}); every weight must be finite (a NaN or inf would set its "
                            f"whole group's scale)")


def quantize_int4(w, group_size: int = 128, symmetric: bool = True):
    """Round-to-nearest int4 quantization of ``w [N, K]`` (float) per group along K.

    Returns ``(q uint8 [N, K], scales float32 [N, K // group_size], zeros uint8 or None)``.
    Every weight must be finite; symmetric: ``q = rint(w / scale) + 8`` with ``scale = max|w| / 7``
    (clipped to 0..15: -8 .. 7 around the zero point); asymmetric: ``scale = (max - min) / 15``.
    """
    op = "quantize_int4"
    w = _host(op, "w", w, "iuf", "a real matrix [N, K]")
    if w.ndim != 2:
        raise ArgumentError(f"{op}(): 'w' must be a matrix [N, K], got shape {w.shape}")
    group_size = require_int(op, "group_size", group_size, allowed=GROUP_SIZES)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise ArgumentError(f"{op}(): symmetric must be True or False, got {symmetric!r}")
    N, K = w.shape
    if K % group_size:
        raise ArgumentError(f"{op}(): 'w' is [N, K] = {w.shape}: K={K} must be a multiple of "
                            f"group_size={group_size}")
    _require_finite(op, "w", w)
    with np.errstate(over="ignore"):
        w = w.astype(np.float32)
    _require_finite(op, "w (as float32)", w)         # a float64 beyond the f32 range
    g = w.reshape(N, K // group_size, group_size)
    if symmetric:
        scale = np.abs(g).max(axis=2) / 7.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(g / scale[..., None]) + 8, 0, 15)
        return q.reshape(N, K).astype(np.uint8), scale.astype(np.float32), None
    lo, hi = g.min(axis=2), g.max(axis=2)
    scale = ((hi.astype(np.float64) - lo) / 15.0).astype(np.float32)   # hi - lo may pass the f32 range
    scale[scale == 0] = 1.0
    zero = np.clip(np.rint(-lo / scale), 0, 15)
    q = np.clip(np.rint(g / scale[..., None]) + zero[..., None], 0, 15)
    return q.reshape(N, K).astype(np.uint8), scale.astype(np.float32), zero.astype(np.uint8)


def from_gptq(qweight, scales, qzeros=None, group_size: int = 128):
    """Convert GPTQ tensors to kaiodsl's layout.

    GPTQ stores ``qweight`` int32 ``[K // 8, N]`` (8 k-values per word, value ``i`` in bits
    ``4i..4i+3``), ``scales`` ``[K // group_size, N]`` and ``qzeros`` int32
    ``[K // group_size, N // 8]`` (8 n-values per word), with the historical off-by-one:
    the zero point used is ``stored + 1``. Returns ``(w_packed, scales [N, K//g], zeros [N, K//g])``.
    """
    op = "from_gptq"
    qw = _words(op, "qweight", qweight, "GPTQ's packed words [K // 8, N]")
    if qw.ndim != 2:
        raise ArgumentError(f"{op}(): 'qweight' must be GPTQ's packed words [K // 8, N], got shape {qw.shape}")
    group_size = require_int(op, "group_size", group_size, allowed=GROUP_SIZES)
    K8, N = qw.shape
    K = 8 * K8
    if N % 8 or K % 128:
        raise ArgumentError(f"{op}(): 'qweight' {qw.shape} is K={K} by N={N}: matmul_int4 needs N a multiple "
                            f"of 8 and K a multiple of 128 (K // 8 = {K8} a multiple of 16)")
    G = K // group_size
    sc = _host(op, "scales", scales, "f", "a float matrix [K // group_size, N]")
    _require_shape(op, "scales", sc, (G, N), f"[K // group_size, N] with group_size={group_size}")
    shifts = (4 * np.arange(8)).astype(np.uint32)
    q = ((qw[:, None, :] >> shifts[None, :, None]) & 0xF).reshape(K, N).T   # [N, K]
    zeros = None
    if qzeros is not None:
        qz = _words(op, "qzeros", qzeros, "GPTQ's packed zero points [K // group_size, N // 8]")
        _require_shape(op, "qzeros", qz, (G, N // 8), f"[K // group_size, N // 8] with group_size={group_size}")
        z = ((qz[:, :, None] >> shifts[None, None, :]) & 0xF).reshape(G, N)
        zeros = np.ascontiguousarray(((z + 1) & 0xF).T).astype(np.uint8)
    return pack_int4(q), np.ascontiguousarray(sc.T), zeros


def dequantize(q, scales, zeros=None, group_size: int = 128, dtype=np.float16) -> np.ndarray:
    """Reference dequantization, rounded once to the activation dtype as the kernel does."""
    op = "dequantize"
    q = _host(op, "q", q, "iu", "an integer matrix [N, K] of values 0..15")
    if q.ndim != 2:
        raise ArgumentError(f"{op}(): 'q' must be a matrix [N, K], got shape {q.shape}")
    group_size = require_int(op, "group_size", group_size, allowed=GROUP_SIZES)
    N, K = q.shape
    if K % group_size:
        raise ArgumentError(f"{op}(): K={K} must be a multiple of group_size={group_size}")
    s = _host(op, "scales", scales, "f", "a float matrix [N, K // group_size]")
    _require_shape(op, "scales", s, (N, K // group_size), "[N, K // group_size]")
    if zeros is None:
        z = np.full((N, K // group_size), 8.0, np.float32)
    else:
        z = _host(op, "zeros", zeros, "iu", "an integer matrix [N, K // group_size]")
        _require_shape(op, "zeros", z, (N, K // group_size), "[N, K // group_size]")
    q, z, s = q.astype(np.float32), z.astype(np.float32), s.astype(np.float32)
    if dtype == np.float16:
        s = s.astype(np.float16).astype(np.float32)
    w = (q - np.repeat(z, group_size, axis=1)) * np.repeat(s, group_size, axis=1)
    return w.astype(dtype) if dtype == np.float16 else w
