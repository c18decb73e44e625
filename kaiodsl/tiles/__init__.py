"""The tile library: every tensor-core kernel is composed of these levels (docs/tiles.md).

layouts    shared-memory tile descriptors, swizzles as data
copies     copy plans: global -> shared (cp.async), shared -> registers (ldmatrix), stores
fragments  accumulator tiles that know each element's (row, col): reductions, masks, acc -> A
mma        warp-level mma.sync over tiles
warpgroup  warpgroup-level wgmma over shared-memory tiles (sm_90a)
pipeline   a ring of stages with an (index, phase) state
epilogue   per-element functions and store policies
tma_epilogue  an epilogue staged in shared memory and stored by TMA (sm_90)
gemm       a block's GEMM main loop composed of the above
dequant    low-bit weights into mma B fragments on load (W4A16)
"""

import warnings as _warnings

from ..errors import IndexOverflowWarning as _IndexOverflowWarning

# Offsets inside one tile are 32-bit by design (one register per copy): a tile's rows times its
# leading dimension must stay below 2**31, or the caller asks for the 64-bit variant (``wide=True``,
# docs/tiles.md). The check is the caller's, so the library's own lines do not warn.
_warnings.filterwarnings("ignore", category=_IndexOverflowWarning, module=r"kaiodsl\.tiles(\.|$)")

from . import copies, dequant, epilogue, fragments, gemm, layouts, mma, pipeline, tma_epilogue, warpgroup
from .copies import TileCopy
from .epilogue import Bias, ColScale, Epilogue, HeadMajor, Map, RowMajor, RowScale, Scale, Split, TensorScale
from .fragments import AccTile
from .gemm import BlockGemm
from .layouts import B32, B64, B128, NONE, SmemTile, Swizzle
from .mma import MmaAtom, WarpMma
from .pipeline import Ring
from .tma_epilogue import TmaStore
from .warpgroup import WarpgroupMma

__all__ = ["copies", "dequant", "epilogue", "fragments", "gemm", "layouts", "mma", "pipeline", "TileCopy", "Bias",
           "ColScale", "Epilogue", "HeadMajor", "Map", "RowMajor", "RowScale", "Scale", "Split", "TensorScale", "AccTile",
           "BlockGemm", "B32", "B64", "B128", "NONE", "SmemTile", "Swizzle", "MmaAtom", "WarpMma", "Ring",
           "warpgroup", "WarpgroupMma", "tma_epilogue", "TmaStore"]
