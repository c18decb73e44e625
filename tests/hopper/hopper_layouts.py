"""Host-side images of K-major shared-memory tiles in the canonical wgmma layouts (PTX ISA 9.7.15.5.1).

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
