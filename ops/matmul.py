"""f16/bf16 GEMM: ``kaiodsl.ops.matmul(a, b, *, out_dtype=None, bias=None, pipeline="auto")``.

``a`` is [M, K] row-major. ``b`` is [K, N] row-major (``b_layout="kn"``, the default;
``"auto"`` means the same) or [N, K] (``b_layout="nk"``: the nn.Linear weight layout,
``a @ w.T`` without a transpose copy). Both must be contiguous. Accumulation is f32; the output is f32, f16 or bf16
(default: the input dtype). ``bias`` [N] is added in f32 before the conversion. Every M, N, K >= 0 runs
(K = 0 with M, N > 0 is refused: there is nothing to compute).

Tile configurations are ``GemmConfig`` values. ``config="auto"`` (the default; None means the same)
takes the device's tuning table (kaiodsl.tuning, ``python -m kaiodsl tune``) and falls back to the
heuristic; ``matmul_choice(M, N, K, ...)`` shows the choice for a shape and its source, and a
GemmConfig as ``config=`` overrides it.

Two kernels: the tiled tensor-core GEMM (tiles.gemm's main loop; ``GemmConfig``) and, for M <= 16 with b
as [N, K], K a multiple of 32 and 16-byte aligned data, the decode weight stream (ops/matmul_decode.py;
``DecodeConfig``). A GemmConfig always selects the tiled kernel (it runs every shape), a DecodeConfig the decode kernel
(an ArgumentError where that cannot run).

Rows of a or b that do not start on 16-byte boundaries (K, or N for b [K, N], not a multiple of 8; or
a data pointer that is not 16-byte aligned, e.g. a flat slice viewed as a matrix) take the tile
library's element path: the same kernel with copies of 8, 4 or 2 bytes (tiles/copies.py says what
the 2-byte one costs). Aligned shapes run the 16-byte cp.async copies unchanged.

On sm_90a, b as [N, K] past M = 64 with 16-byte aligned rows runs the Hopper kernel (ops/gemm_sm90.py,
``Sm90Config``: TMA + wgmma, warp-specialised and persistent).
"""

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

import kaiodsl
from kaiodsl import Const, Ptr, bf16, f16, f32, i32, tiles, tuning
from kaiodsl.errors import ArgumentError
from kaiodsl.types import ScalarType

from . import gemm_sm90
from ._common import (I32_MAX, data_alignment, inspect_array, new_like, require_choice, require_contiguous,
                      require_dtype, require_i32_sizes, require_positive_fields, require_rank, require_smem,
                      same_kind)
from .decode_gemm import DecodeConfig, decode_exact
from .matmul_decode import (check_decode_config, decode_config, decode_grid, decode_kernel, decode_preferred,
                            decode_unfit)


@dataclass(frozen=True)
class GemmConfig:
    """A block tile of ``block_m x block_n``, ``block_k`` deep; ``warps_m x warps_n`` warps; ``stages``
    shared-memory buffers (1 = the plain synchronous kernel, >= 2 = the cp.async pipeline)."""

    block_m: int = 128
    block_n: int = 128
    block_k: int = 32
    warps_m: int = 2
    warps_n: int = 4
    stages: int = 4
    group_m: int = 8

    def __post_init__(self):
        require_positive_fields(self)

    @property
    def warp_m(self) -> int:
        return self.block_m // self.warps_m

    @property
    def warp_n(self) -> int:
        return self.block_n // self.warps_n

    @property
    def threads(self) -> int:
        return 32 * self.warps_m * self.warps_n

    def smem_bytes(self, elem_bytes: int) -> int:
        return self.stages * (self.block_m + self.block_n) * self.block_k * elem_bytes

    def check(self, elem_bytes: int, b_kmajor: bool = True) -> None:
        """Raise ArgumentError unless this tiling is one the GEMM kernels compute correctly with
        ``elem_bytes``-byte elements and B [N, K] (``b_kmajor``) or [K, N]."""
        bk_bytes = self.block_k * elem_bytes
        bn_chunks = self.block_n * elem_bytes // 16      # 16-byte chunks in a row of a [BK, BN] B tile
        rules = [
            (self.block_m % self.warps_m == 0 and self.block_n % self.warps_n == 0,
             "block_m / block_n must be whole multiples of warps_m / warps_n"),
            (self.warp_m % 16 == 0 and self.warp_n % 16 == 0, "warp tiles (block / warps) must be multiples of 16"),
            (bk_bytes in (64, 128), f"block_k * {elem_bytes} bytes must be 64 or 128"),
            (self.threads <= 1024, "warps_m * warps_n must be at most 32 (1024 threads a block)"),
            (all(rows * bk_bytes // 16 % self.threads == 0 for rows in (self.block_m, self.block_n)),
             "every thread must copy whole 16-byte chunks of the A and B tiles"),
            # [BK, BN] B rows are swizzled with chunk ^ (row & 7): whole groups of 8 chunks per row
            (b_kmajor or (bn_chunks % 8 == 0 and (self.block_k * bn_chunks) % self.threads == 0),
             f"with b as [K, N], block_n * {elem_bytes} bytes must be a multiple of 128 and every thread "
             f"must copy whole 16-byte chunks of the B tile"),
        ]
        for ok, rule in rules:
            if not ok:
                raise ArgumentError(f"GemmConfig {self!r} is not a valid tiling for {elem_bytes}-byte elements"
                                    f"{'' if b_kmajor else ' and b [K, N]'}: {rule}")

    def __str__(self) -> str:
        return (f"{self.block_m}x{self.block_n}x{self.block_k}/w{self.warps_m}x{self.warps_n}"
                f"/s{self.stages}")


# The heuristic's configs, picked by hand-run sweeps on an H100 (results in benchmarks/results); a device with
# a tuning table (python -m kaiodsl tune) gets its measured configs instead (matmul_choice).
SYNC = GemmConfig(block_m=128, block_n=128, block_k=32, warps_m=2, warps_n=2, stages=1)
ASYNC_LARGE = GemmConfig(block_m=128, block_n=128, block_k=32, warps_m=2, warps_n=2, stages=4)
ASYNC_SMALL_M = GemmConfig(block_m=64, block_n=64, block_k=32, warps_m=2, warps_n=2, stages=4)
ASYNC_TINY_M = GemmConfig(block_m=16, block_n=64, block_k=64, warps_m=1, warps_n=2, stages=4)


def matmul_heuristic(M: int, N: int, K: int, dtype="f16", b_layout: str = "nk", pipeline: str = "auto"):
    """The heuristic: the decode weight stream (a DecodeConfig) for M <= 16 with b [N, K], N < 8192 and K a
    multiple of 32 (16-byte aligned data assumed); else the tiled kernel's GemmConfig: the async
    pipeline for everything but tiny K (where there is nothing to overlap), smaller tiles as M
    shrinks, so that small-M shapes still fill the GPU."""
    if pipeline == "auto" and not decode_unfit(M, K, b_layout, True) and decode_preferred(N):
        return decode_config(M, N, K)
    return tiled_config(M, N, K, pipeline)


def tiled_config(M: int, N: int, K: int, pipeline: str = "auto", element_copies: bool = False) -> GemmConfig:
    """The tiled kernel's GemmConfig (matmul_heuristic without the decode choice). ``element_copies``
    (rows off 16-byte boundaries): no 128x128 tile, whose 128 accumulators a thread already take
    ~254 registers, so that the element path's predicates and addresses would spill."""
    if pipeline == "sync" or (pipeline == "auto" and K <= 64):
        return SYNC
    if M <= 16:
        return ASYNC_TINY_M
    if M <= 512 or element_copies:
        return ASYNC_SMALL_M
    return ASYNC_LARGE


def _validate_entry(cfg: GemmConfig, dtype: str, layout: str) -> None:
    """A table entry's config must be one matmul can run on the current arch."""
    check_config("matmul", cfg, 2, layout == "nk")


def matmul_choice(M: int, N: int, K: int, dtype="f16", b_layout: str = "nk", pipeline: str = "auto",
                  config="auto") -> tuning.Choice:
    """The config ``matmul`` runs for this shape and where it comes from (``.config``, ``.source``).

    ``config`` a GemmConfig: that one ("given"). ``"auto"`` or None: with ``pipeline="auto"``, the
    tuning table of the current device (``python -m kaiodsl tune``; the exact shape, else its shape
    class), else the heuristic (``matmul_heuristic``); ``pipeline="sync"/"async"`` always use the
    heuristic, since the table was tuned with the pipeline free."""
    if isinstance(config, (GemmConfig, DecodeConfig, gemm_sm90.Sm90Config)):
        return tuning.Choice(config, "given")
    if not (config is None or (isinstance(config, str) and config == "auto")):
        raise ArgumentError(f"matmul(): config must be a kaiodsl.ops.GemmConfig, 'auto' or None, "
                            f"got {type(config).__name__} {config!r}")
    name = _dtype_name(dtype, "f16")
    if pipeline == "auto" and gemm_sm90.wants_sm90(M, N, K, b_layout):
        found = tuning.lookup(tuning.device_name(), "matmul_sm90", name, b_layout, (M, N, K), gemm_sm90.Sm90Config,
                              lambda c, d, l: c.check(2))
        if found is not None:
            return found
        cfg = gemm_sm90.sm90_config(M, N, K, gemm_sm90.sm_count())
        split = f", split-K {cfg.split_k} (too few tiles for the SMs, K={K})" if cfg.split_k > 1 else ""
        return tuning.Choice(cfg, f"heuristic: the sm_90a kernel (TMA + wgmma, ops/gemm_sm90.py){split}")
    if pipeline == "auto" and not decode_unfit(M, K, b_layout, True) and decode_preferred(N):
        return tuning.Choice(decode_config(M, N, K), "heuristic: the decode weight stream (ops/matmul_decode.py)")
    if pipeline == "auto":
        found = tuning.lookup(tuning.device_name(), "matmul", name, b_layout, (M, N, K), GemmConfig,
                              _validate_entry)
        if found is not None:
            return found
    return tuning.Choice(matmul_heuristic(M, N, K, name, b_layout, pipeline), "heuristic")


def matmul_config(M: int, N: int, K: int, dtype="f16", b_layout: str = "nk", pipeline: str = "auto"):
    """The config (GemmConfig, DecodeConfig or Sm90Config) ``matmul`` picks for this shape with ``config="auto"`` (``matmul_choice(...).config``)."""
    return matmul_choice(M, N, K, dtype, b_layout, pipeline).config


# -- the kernels ---------------------------------------------------------------------------------------
WIDE_LD = 2**31 // 256     # leading dimensions from here need 64-bit offsets inside a tile (tiles <= 256 rows)


def needs_wide(M: int, N: int, K: int) -> bool:
    """Whether a tile's rows x leading dimension can pass 2^31 (K or N >= 8M): the kernel's ``wide`` variant."""
    return max(K, N) >= WIDE_LD


def block_gemm(cfg: GemmConfig, dtype, b_kmajor: bool, atom: str, wide: bool = False, a_granule: int = 0,
               b_granule: int = 0) -> tiles.BlockGemm:
    """The tile library's main-loop configuration of ``cfg`` for elements of ``dtype``; granules: the
    byte alignment of A's / B's rows when less than 16 (0: 16-byte aligned)."""
    return tiles.BlockGemm(cfg.block_m, cfg.block_n, cfg.block_k, cfg.warps_m, cfg.warps_n, cfg.stages, dtype,
                           tiles.MmaAtom(atom), b_kmajor, cfg.group_m, wide, a_granule, b_granule)


def row_granule(ld: int, elem_bytes: int, ptr_align: int = 16) -> int:
    """The copy granule for rows of ``ld`` elements from a pointer aligned to ``ptr_align`` bytes: 0 when
    every row starts on a 16-byte boundary (the fast path), else the largest power of two (2, 4 or 8
    bytes, at least one element) that divides every row's start."""
    row = ld * elem_bytes
    g = min(16, ptr_align, (row & -row) if row else 16)
    return 0 if g >= 16 else max(g, elem_bytes)


@kaiodsl.func
def gemm_body(G: Const, E: Const, a, b, c, args, M, N, K):
    """One block of any GEMM: the main loop, then the epilogue E on the warp's tile."""
    smem = kaiodsl.dynamic_shared(G.dtype)
    tid = kaiodsl.thread_idx.x
    row0, col0 = tiles.gemm.tile_coords(M, N, G.bm, G.bn, G.group_m)
    acc = tiles.gemm.main_loop(G, smem, a, b, M, N, K, row0, col0)
    wm0, wn0 = tiles.gemm.warp_origin(G, tid)
    tiles.epilogue.store_tile(E, G.warp.acc_tile, acc, c, args, row0 + wm0, col0 + wn0, tid % 32, M, N)


@lru_cache(maxsize=None)
def gemm_kernel(dtype_name: str, out_name: str, b_kmajor: bool, cfg: GemmConfig, has_bias: bool, wide: bool = False,
                a_granule: int = 0, b_granule: int = 0):
    T = {"f16": f16, "bf16": bf16}[dtype_name]
    OUT = {"f16": f16, "bf16": bf16, "f32": f32}[out_name]
    G = block_gemm(cfg, T, b_kmajor, dtype_name, wide, a_granule, b_granule)
    E = tiles.Epilogue((tiles.Bias(),) if has_bias else (), OUT)
    name = f"gemm_{dtype_name}_{out_name}_{'nk' if b_kmajor else 'kn'}_{cfg.block_m}x{cfg.block_n}x{cfg.block_k}" \
           f"_w{cfg.warps_m}x{cfg.warps_n}_s{cfg.stages}" + ("_wide" if wide else "") + \
           (f"_ga{a_granule}" if a_granule else "") + (f"_gb{b_granule}" if b_granule else "")

    @kaiodsl.kernel(block_size=cfg.threads, name=name)
    def gemm(a: Ptr[T], b: Ptr[T], c: Ptr[OUT], bias: Ptr[f32], M: i32, N: i32, K: i32):
        gemm_body(G, E, a, b, c, (bias,) if has_bias else (), M, N, K)

    return gemm


# -- the op ----------------------------------------------------------------------------------------------
_DUMMY = {}


def dummy_f32(like):
    """A one-element f32 array of the same kind/device as ``like``, for kernel pointers not read."""
    key = (like.kind, str(like.device))
    d = _DUMMY.get(key)
    if d is None:
        d = _DUMMY[key] = new_like(like, (1,), f32)
    return d


def _bias_f32(bias, like, N: int, op: str):
    if bias is None:
        return dummy_f32(like)
    bz = inspect_array("bias", bias, op)
    require_rank(bz, 1, op, "a vector [N]")
    require_dtype(bz, (f16, bf16, f32), op)
    if bz.shape[0] != N:
        raise ArgumentError(f"{op}(): 'bias' has {bz.shape[0]} elements; it must have N={N}")
    same_kind(op, like, bz)
    if bz.dtype == f32:
        require_contiguous(bz, op)
        return bias
    if bz.kind == "torch":
        return bias.float().contiguous()
    if bz.kind == "numpy":
        return bias.astype(np.float32)
    raise ArgumentError(f"{op}(): give 'bias' as f32 for a {bz.kind} array")


def _dtype_name(d, default: str):
    """'f16' / kaiodsl.f16 / numpy or torch float16 -> 'f16' (None -> default)."""
    if d is None:
        return default
    if isinstance(d, str):
        return d
    name = getattr(d, "name", None)
    if isinstance(name, str) and name in ("f16", "bf16", "f32"):
        return name
    text = str(d).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")
    return {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}.get(text, text)


def _b_layout(layout, op: str) -> str:
    require_choice(op, "b_layout", layout, ("auto", "kn", "nk"),
                   " ('kn': b is [K, N]; 'nk': b is [N, K], the nn.Linear weight; 'auto': 'kn')")
    return "kn" if layout == "auto" else layout


def out_dtype_of(op: str, out_dtype, default: str) -> ScalarType:
    """``out_dtype`` (a name, a kaiodsl type, a numpy/torch float dtype; None: ``default``) as f16/bf16/f32."""
    name = _dtype_name(out_dtype, default)
    if not (isinstance(name, str) and name in _OUT_TYPES):
        raise ArgumentError(f"{op}(): out_dtype must be f32, f16 or bf16, got {out_dtype!r}")
    return _OUT_TYPES[name]


_OUT_TYPES = {"f16": f16, "bf16": bf16, "f32": f32}


def config_or_default(op: str, config, default, decode: bool = False):
    """``config`` when it is a GemmConfig (or, with ``decode``, a DecodeConfig), ``default()`` when it is
    None or ``"auto"``."""
    if config is None or (isinstance(config, str) and config == "auto"):
        return default()
    if not (isinstance(config, GemmConfig) or decode and isinstance(config, DecodeConfig)):
        what = "a kaiodsl.ops.GemmConfig" + (", DecodeConfig" if decode else "") + " or Sm90Config"
        raise ArgumentError(f"{op}(): config must be {what}, or 'auto' / None to let the op choose, "
                            f"got {type(config).__name__} {config!r}")
    return config


def check_config(op: str, cfg: GemmConfig, elem_bytes: int, b_kmajor: bool = True) -> None:
    """``cfg.check`` and the shared-memory limit of the current arch, as errors of ``op``'s ``config``."""
    try:
        cfg.check(elem_bytes, b_kmajor)
    except ArgumentError as e:
        raise ArgumentError(f"{op}(): config: {e}") from None
    require_smem(op, f"config {cfg}", cfg.smem_bytes(elem_bytes))


def tile_grid(op: str, M: int, N: int, cfg: GemmConfig) -> int:
    """One block per output tile, in grid.x (which holds at most 2**31 - 1 blocks)."""
    grid = ((M + cfg.block_m - 1) // cfg.block_m) * ((N + cfg.block_n - 1) // cfg.block_n)
    if grid > I32_MAX:
        raise ArgumentError(f"{op}(): M={M}, N={N} with {cfg.block_m}x{cfg.block_n} tiles need {grid} blocks; "
                            f"a grid holds at most 2**31 - 1: use a config with larger tiles")
    return grid


def matmul(a, b, *, out_dtype=None, bias=None, pipeline: str = "auto", b_layout: str = "auto", config="auto"):
    """``a @ b`` (b [K, N]) or ``a @ b.T`` (b [N, K], ``b_layout="nk"``) on the tensor cores.

    ``config``: a GemmConfig, or ``"auto"`` (None means the same): the device's tuning table, else the
    heuristic; ``matmul_choice`` shows which and why."""
    op = "matmul"
    az, bz = inspect_array("a", a, op), inspect_array("b", b, op)
    require_rank(az, 2, op, "a matrix [M, K]")
    require_rank(bz, 2, op, "a matrix")
    require_dtype(az, (f16, bf16), op)
    require_dtype(bz, (az.dtype,), op)
    same_kind(op, az, bz)
    layout = _b_layout(b_layout, op)
    M, K = az.shape
    if layout == "kn":
        Kb, N = bz.shape
    else:
        N, Kb = bz.shape
    if Kb != K:
        dims = "[K, N]" if layout == "kn" else "[N, K]"
        raise ArgumentError(f"{op}(): 'a' is [M, K] = {az.shape} but 'b' ({dims}, b_layout={layout!r}) is "
                            f"{bz.shape}: K={K} and {Kb} differ")
    require_contiguous(az, op)
    require_contiguous(bz, op)
    require_choice(op, "pipeline", pipeline, ("auto", "sync", "async"))
    out_t = out_dtype_of(op, out_dtype, az.dtype.name)
    ga = row_granule(K, 2, data_alignment(az))
    gb = row_granule(K if layout == "nk" else N, 2, data_alignment(bz))
    aligned = not (ga or gb)
    if isinstance(config, gemm_sm90.Sm90Config) or ((config is None or config == "auto") and pipeline == "auto"
                                                    and aligned and gemm_sm90.wants_sm90(M, N, K, layout)):
        return _matmul_sm90(op, a, b, az, M, N, K, out_t, bias, layout, config, aligned)
    unfit = decode_unfit(M, K, layout, aligned)

    def default():
        if not aligned:
            return tiled_config(M, N, K, pipeline, True)
        return matmul_choice(M, N, K, az.dtype.name, layout, pipeline).config

    cfg = config_or_default(op, config, default, decode=True)
    if isinstance(cfg, DecodeConfig):
        if unfit or pipeline != "auto":
            why = unfit or f"pipeline={pipeline!r} selects the tiled kernel (leave it 'auto')"
            raise ArgumentError(f"{op}(): config {cfg!r} is a DecodeConfig, but the decode kernel cannot run "
                                f"this product: {why}; give a GemmConfig (or None)")
        check_decode_config(op, cfg)
    else:
        if pipeline == "sync" and cfg.stages != 1:
            cfg = replace(cfg, stages=1)
        if pipeline == "async" and cfg.stages == 1:
            cfg = replace(cfg, stages=3)
        check_config(op, cfg, 2, layout == "nk")
    require_i32_sizes(op, M=M, N=N, K=K)
    if K == 0 and M and N:
        raise ArgumentError(f"{op}(): K=0: the product would be all zeros; nothing to compute")
    grid = decode_grid(M, N, cfg) if isinstance(cfg, DecodeConfig) else tile_grid(op, M, N, cfg)
    bias_arg = _bias_f32(bias, az, N, op)          # the last check; allocates only when all passed
    out = new_like(az, (M, N), out_t)
    if M == 0 or N == 0:
        return out
    if isinstance(cfg, DecodeConfig):
        k = decode_kernel(az.dtype.name, out_t.name, cfg, bias is not None, M > 8, decode_exact(cfg, K, 32))
        k[grid, cfg.threads](a, b, out, bias_arg, M, N, K, smem=cfg.smem_bytes())
        return out
    k = gemm_kernel(az.dtype.name, out_t.name, layout == "nk", cfg, bias is not None, needs_wide(M, N, K), ga, gb)
    k[grid, cfg.threads](a, b, out, bias_arg, M, N, K, smem=cfg.smem_bytes(2))
    return out


def _matmul_sm90(op, a, b, az, M, N, K, out_t, bias, layout, config, aligned):
    """The Hopper kernel (ops/gemm_sm90.py) for validated f16/bf16 operands."""
    cfg = gemm_sm90.checked_config(op, config, K, layout, aligned, 2,
                                   lambda: matmul_choice(M, N, K, az.dtype.name, layout).config)
    require_i32_sizes(op, M=M, N=N, K=K)
    if K == 0 and M and N:
        raise ArgumentError(f"{op}(): K=0: the product would be all zeros; nothing to compute")
    bias_arg = _bias_f32(bias, az, N, op) if bias is not None else None
    out = new_like(az, (M, N), out_t)
    if M == 0 or N == 0:
        return out
    E = tiles.Epilogue((tiles.Bias(),) if bias is not None else (), out_t)
    args, types = ((bias_arg,), (Ptr[f32],)) if bias is not None else ((), ())
    return gemm_sm90.launch(az.dtype.name, a, b, out, M, N, K, cfg, E, args, types)


def matmul_kernel_for(a, b, b_layout: str, config, out_dtype: str = "f16", bias: bool = False):
    """The CompiledKernel matmul would run for a GemmConfig, DecodeConfig or Sm90Config (for its registers,
    spills, PTX); the granules of the element path follow a's and b's shapes (and data pointers) as in matmul."""
    from kaiodsl.runtime import current

    op = "matmul_kernel_for"
    az, bz = inspect_array("a", a, op), inspect_array("b", b, op)
    require_dtype(az, (f16, bf16), op)
    layout = _b_layout(b_layout, op)
    out_t = out_dtype_of(op, out_dtype, az.dtype.name)
    if isinstance(config, DecodeConfig):
        check_decode_config(op, config)
        return decode_kernel(az.dtype.name, out_t.name, config, bool(bias), az.shape[0] > 8).compile(
            arch=current().arch)
    if isinstance(config, gemm_sm90.Sm90Config):
        try:
            config.check(2)
        except ArgumentError as e:
            raise ArgumentError(f"{op}(): config: {e}") from None
        E = tiles.Epilogue((tiles.Bias(),) if bias else (), out_t)
        return gemm_sm90.kernel_for(az.dtype.name, config, E, (Ptr[f32],) if bias else ()).compile(arch="sm_90a")
    if not isinstance(config, GemmConfig):
        raise ArgumentError(f"{op}(): config must be a kaiodsl.ops.GemmConfig, DecodeConfig or Sm90Config, "
                            f"got {config!r}")
    check_config(op, config, 2, layout == "nk")
    K = az.shape[-1]
    ga = row_granule(K, 2, data_alignment(az))
    gb = row_granule(K if layout == "nk" else bz.shape[-1], 2, data_alignment(bz))
    return gemm_kernel(az.dtype.name, out_t.name, layout == "nk", config, bool(bias), False, ga,
                       gb).compile(arch=current().arch)


def reference_matmul(a, b, b_layout: str = "kn", bias=None) -> np.ndarray:
    """numpy reference in float64: a [M, K] @ b ([K, N], or [N, K] transposed)."""
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64)
    out = a64 @ (b64 if b_layout == "kn" else b64.T)
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out
