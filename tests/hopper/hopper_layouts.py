"""Host-side images of K-major and MN-major shared-memory tiles in the canonical wgmma layouts
(PTX ISA 9.7.15.5.1.2).

With a swizzle of W bytes (32/64/128) a tile of ``rows`` x ``kbytes`` is stored as column blocks W
bytes wide, each ``rows`` rows of W contiguous bytes, and the swizzle permutes 16-byte chunks:
address bits [4, 4+log2(W/16)) are XORed with bits [7, ...) (CUTLASS calls it Swizzle<b,4,3>), so the
tile must start on an 8*W-byte boundary. Without swizzle it is stored as 8-row x 16-byte core
matrices: column block c (16 bytes of K) holds ``rows`` rows, 8-row groups 128 bytes apart.
"""

import numpy as np


def _swizzle(lin, w):
    return lin ^ (((lin >> 7) & (w // 16 - 1)) << 4)


def tile_image(mat_bytes: np.ndarray, swizzle: int) -> np.ndarray:
    """[rows, kbytes] uint8 -> the tile's bytes as they lie in shared memory."""
    rows, kb = mat_bytes.shape
    w = swizzle or 16
    assert kb % w == 0 and rows % 8 == 0
    r = np.arange(rows)[:, None]
    k = np.arange(kb)[None, :]
    cb, kin = k // w, k % w
    if swizzle:
        lin = _swizzle(cb * rows * w + r * w + kin, w)
    else:
        lin = cb * rows * 16 + (r // 8) * 128 + (r % 8) * 16 + kin
    img = np.zeros(rows * kb, np.uint8)
    img[lin.ravel()] = mat_bytes.ravel()
    return img


def k_step_offset(step: int, rows: int, swizzle: int) -> int:
    """Byte offset of the descriptor start for the step-th 32-byte slice of K."""
    if swizzle:
        cb, within = divmod(step * 32, swizzle)
        return cb * rows * swizzle + within
    return step * 2 * rows * 16


# -- MN-major (imm-trans 1, f16/bf16): the layout a TMA load of (BK, W/2)-element boxes produces ----------
def mn_tile_image(mat: np.ndarray, swizzle: int) -> np.ndarray:
    """[K, MN] matrix of 16-bit elements (row-major: a [K, N] B or A^T) -> its MN-major shared bytes.

    Column block c (W bytes = W/2 elements of M/N, W = swizzle or 16) is K rows of W contiguous bytes
    at offset c * K * W, swizzled like the K-major tiles; M/N is padded with zeros up to whole
    blocks (pass a wider matrix to choose the padding). This is where TMA puts box c of a
    ``TensorMap([K, N], box=(K, W/2), swizzle=W)`` loaded to offset c * K * W."""
    k, mn = mat.shape
    w = swizzle or 16
    per = w // mat.itemsize
    cols = -(-mn // per) * per
    padded = np.zeros((k, cols), mat.dtype)
    padded[:, :mn] = mat
    raw = padded.view(np.uint8).reshape(k, cols * mat.itemsize)
    return tile_image(raw, swizzle)  # the same blocks-of-rows scheme, rows now being K


def mn_k_step_offset(step: int, swizzle: int) -> int:
    """Byte offset of the descriptor start for the step-th k16 slice: 16 rows of W bytes."""
    return step * 16 * (swizzle or 16)
