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

ORDER = np.array([0, 2, 4, 6, 1, 3, 5, 7])


def pack_int4(q) -> np.ndarray:
    """Pack an integer matrix ``q [N, K]`` with values 0..15 into the kernel layout
    (int32 ``[N // 8, K // 128, 32, 4]``)."""
    q = np.asarray(q)
    if q.ndim != 2:
        raise ArgumentError(f"pack_int4(): q must be a matrix [N, K], got shape {q.shape}")
    N, K = q.shape
    if N % 8 or K % 128:
        raise ArgumentError(f"pack_int4(): N={N} must be a multiple of 8 and K={K} a multiple of 128")
    if q.size and (q.min() < 0 or q.max() > 15):
        raise ArgumentError(f"pack_int4(): values must be in 0..15, got {q.min()}..{q.max()}")
    v = q.astype(np.uint32).reshape(N // 8, 8, K // 128, 4, 4, 8)   # [i, g, jj, w, t, j]
    v = v.transpose(0, 2, 1, 4, 3, 5)                                # [i, jj, g, t, w, j]
    word = np.zeros(v.shape[:5], np.uint32)
    for p in range(8):
        word |= v[..., ORDER[p]] << np.uint32(4 * p)
    return np.ascontiguousarray(word.reshape(N // 8, K // 128, 32, 4)).view(np.int32)


def unpack_int4(w_packed) -> np.ndarray:
    """Inverse of pack_int4: int32 ``[N // 8, K // 128, 32, 4]`` -> uint8 ``[N, K]``."""
    w = np.asarray(w_packed).view(np.uint32)
    ni, nb = w.shape[:2]
    word = w.reshape(ni, nb, 8, 4, 4)                                 # [i, jj, g, t, w]
    v = np.zeros(word.shape + (8,), np.uint8)
    for p in range(8):
        v[..., ORDER[p]] = (word >> np.uint32(4 * p)) & 0xF
    v = v.transpose(0, 2, 1, 4, 3, 5)                                # [i, g, jj, w, t, j]
    return np.ascontiguousarray(v).reshape(ni * 8, nb * 128)


def quantize_int4(w, group_size: int = 128, symmetric: bool = True):
    """Round-to-nearest int4 quantization of ``w [N, K]`` (float) per group along K.

    Returns ``(q uint8 [N, K], scales float32 [N, K // group_size], zeros uint8 or None)``.
    """
    w = np.asarray(w, np.float32)
    N, K = w.shape
    g = w.reshape(N, K // group_size, group_size)
    if symmetric:
        scale = np.abs(g).max(axis=2) / 7.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(g / scale[..., None]) + 8, 0, 15)
        return q.reshape(N, K).astype(np.uint8), scale.astype(np.float32), None
    lo, hi = g.min(axis=2), g.max(axis=2)
    scale = (hi - lo) / 15.0
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
    qweight = np.asarray(qweight).view(np.uint32)
    K8, N = qweight.shape
    shifts = (4 * np.arange(8)).astype(np.uint32)
    q = ((qweight[:, None, :] >> shifts[None, :, None]) & 0xF).reshape(K8 * 8, N).T   # [N, K]
    s = np.ascontiguousarray(np.asarray(scales).T)
    zeros = None
    if qzeros is not None:
        qz = np.asarray(qzeros).view(np.uint32)
        z = ((qz[:, :, None] >> shifts[None, None, :]) & 0xF).reshape(qz.shape[0], -1)[:, :N]
        zeros = np.ascontiguousarray(((z + 1) & 0xF).T).astype(np.uint8)
    return pack_int4(q), s, zeros


def dequantize(q, scales, zeros=None, group_size: int = 128, dtype=np.float16) -> np.ndarray:
    """Reference dequantization, rounded once to the activation dtype as the kernel does."""
    q = np.asarray(q, np.float32)
    N, K = q.shape
    z = np.full((N, K // group_size), 8.0, np.float32) if zeros is None else np.asarray(zeros, np.float32)
    s = np.asarray(scales, np.float32)
    if dtype == np.float16:
        s = s.astype(np.float16).astype(np.float32)
    w = (q - np.repeat(z, group_size, axis=1)) * np.repeat(s, group_size, axis=1)
    return w.astype(dtype) if dtype == np.float16 else w
