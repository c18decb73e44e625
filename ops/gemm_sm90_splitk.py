"""Split-K's second kernel for the Hopper GEMM (ops/gemm_sm90.py): ``out = epilogue(sum of the partials)``.

With ``Sm90Config(split_k=S)`` the GEMM kernel cuts K into S ranges and writes the f32 partial
product of range s to rows ``s * Mp ..`` of a workspace [S * Mp, Np] (Mp, Np: M and N rounded up
to whole tiles, so each partial tile is written whole and no split reaches into the next). This
kernel sums the S partials of every element in the order s = 0, 1, ..., S - 1 -- fixed, whatever
the grid, so the result has the same bits every run -- then applies the epilogue's ops
(``tiles.epilogue``: scales, bias, maps, the rounding) and stores through its store policy. A
thread takes 4 columns of one row: one 16-byte load per partial, two pair stores; a block of 256
threads 1024 columns of one row (all offsets 64-bit).
"""


from functools import lru_cache

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32, i64, tiles

THREADS = 256
COLS = 4 * THREADS          # columns of one row per block


@kaiodsl.func
def reduce_body(E: Const, S: Const[int], ws, out, args, M, N, Mp, Np):
    blocks_per_row = (Np + COLS - 1) // COLS
    row = kaiodsl.block_idx.x // blocks_per_row
    col = (kaiodsl.block_idx.x - row * blocks_per_row) * COLS + 4 * kaiodsl.thread_idx.x
    if row < M and col < N:
        at = i64(row) * Np + col
        acc = kaiodsl.load(ws, at, vec=4)
        v = [acc[0], acc[1], acc[2], acc[3]]
        for s in kaiodsl.static_range(1, S):
            p = kaiodsl.load(ws, at + i64(Mp) * Np * s, vec=4)
            v = [v[0] + p[0], v[1] + p[1], v[2] + p[2], v[3] + p[3]]
        xs = tiles.epilogue.load_scalars(E, args)
        rf = tiles.epilogue.row_factor(E, xs, row, M)
        for h in kaiodsl.static_range(2):
            c = col + 2 * h
            if c < N:
                cf0, cv0 = tiles.epilogue.col_terms(E, xs, c, N)
                cf1, cv1 = tiles.epilogue.col_terms(E, xs, c + 1, N)
                v0 = tiles.epilogue.apply(E, v[2 * h], cf0, rf, cv0, row, c)
                v1 = tiles.epilogue.apply(E, v[2 * h + 1], cf1, rf, cv1, row, c + 1)
                tiles.epilogue.store_pair_values(E, out, row, c, N, v0, v1)


@lru_cache(maxsize=None)
def reduce_kernel(E: tiles.Epilogue, arg_types: tuple, S: int):
    """The reduction of S partials through epilogue E (run-time operands of kaiodsl types ``arg_types``)."""
    OUT = E.out
    name = f"gemm_sm90_splitk_reduce_{OUT.name}_k{S}" + "".join(f"_{op.kind}{getattr(op, 'axis', '')}"
                                                               for op in E.ops)
    nargs = len(arg_types)
    if nargs == 0:
        @kaiodsl.kernel(block_size=THREADS, name=name)
        def kern(ws: Ptr[f32], out: Ptr[OUT], M: i32, N: i32, Mp: i32, Np: i32):
            reduce_body(E, S, ws, out, (), M, N, Mp, Np)
    elif nargs == 1:
        T0, = arg_types

        @kaiodsl.kernel(block_size=THREADS, name=name)
        def kern(ws: Ptr[f32], out: Ptr[OUT], x0: T0, M: i32, N: i32, Mp: i32, Np: i32):
            reduce_body(E, S, ws, out, (x0,), M, N, Mp, Np)
    elif nargs == 2:
        T0, T1 = arg_types

        @kaiodsl.kernel(block_size=THREADS, name=name)
        def kern(ws: Ptr[f32], out: Ptr[OUT], x0: T0, x1: T1, M: i32, N: i32, Mp: i32, Np: i32):
            reduce_body(E, S, ws, out, (x0, x1), M, N, Mp, Np)
    else:
        T0, T1, T2 = arg_types

        @kaiodsl.kernel(block_size=THREADS, name=name)
        def kern(ws: Ptr[f32], out: Ptr[OUT], x0: T0, x1: T1, x2: T2, M: i32, N: i32, Mp: i32, Np: i32):
            reduce_body(E, S, ws, out, (x0, x1, x2), M, N, Mp, Np)
    return kern


def reduce(ws, S: int, Mp: int, Np: int, out, M: int, N: int, E: tiles.Epilogue, args: tuple, arg_types: tuple):
    """``out [M, N] = E(sum over s of ws[s * Mp : s * Mp + M, :N])`` on the launch's stream."""
    k = reduce_kernel(E, arg_types, S)
    k[M * -(-Np // COLS), THREADS](ws, out, *args, M, N, Mp, Np)
    return out
