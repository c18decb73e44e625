"""kaiodsl.tiles.pipeline: the (index, phase) state of the stage ring, in a kernel against the host
model; the cp.async ring's wait/commit in a kernel (the simulator checks reads before wait_group)."""

import numpy as np
import pytest

import kaiodsl
from kaiodsl import Const, Ptr, f32, i32, tiles
from kaiodsl.tiles import pipeline


@kaiodsl.kernel(block_size=32)
def walk(out: Ptr[i32], steps: i32, R: Const, START: Const[int]):
    state = pipeline.start(R, START)
    for s in range(steps):
        index, phase = state
        if kaiodsl.thread_idx.x == 0:
            out[2 * s] = index
            out[2 * s + 1] = phase
        state = pipeline.advance(R, pipeline.release(R, pipeline.acquire(R, state)))


@pytest.mark.parametrize("stages", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("phases", [False, True])
def test_ring_state_walks_like_the_host_model(backend, stages, phases):
    """One slot too: each step wraps, so a ring that keeps phases flips it every step (an mbarrier ring
    of one slot that kept phase 0 would pass its second wait at once)."""
    R = tiles.Ring(stages, phases=phases)
    steps = 3 * stages + 2
    out = np.full(2 * steps, -1, np.int32)
    walk[1, 32](out, steps, R=R, START=stages - 1)
    want = [x for s in range(steps) for x in R.state_after(s, stages - 1)]
    np.testing.assert_array_equal(out, want)


def test_cp_async_ring_keeps_no_phase_in_the_loop():
    ptx = walk.compile(arch="sm_80", R=tiles.Ring(4), START=0).ptx
    body = ptx[ptx.index("$loop"):]
    assert "xor.b32" not in body                       # no phase bit for cp.async
    ptx = walk.compile(arch="sm_80", R=tiles.Ring(4, phases=True), START=0).ptx
    assert "xor.b32" in ptx[ptx.index("$loop"):]


@kaiodsl.kernel(block_size=64)
def staged_copy(x: Ptr[f32], y: Ptr[f32], n_tiles: i32, R: Const):
    """y = x through a ring of 64-float stages: prefetch stages - 1 tiles, then wait / read / refill."""
    buf = kaiodsl.shared_array(f32, (R.stages, 64), name="buf")
    tid = kaiodsl.thread_idx.x
    for s in kaiodsl.static_range(R.stages - 1):
        if s < n_tiles:
            kaiodsl.cp_async(buf.ptr(s, tid), x + (s * 64 + tid), 4)
        pipeline.commit(R)
    read = pipeline.start(R)
    write = pipeline.start(R, R.stages - 1)
    for t in range(n_tiles):
        pipeline.wait(R, R.stages - 2)
        index, phase = read
        y[t * 64 + (tid + 1) % 64] = buf[index, (tid + 1) % 64]      # another thread's copy: needs the barrier
        kaiodsl.syncthreads()
        widx, wph = pipeline.acquire(R, write)
        if t + R.stages - 1 < n_tiles:
            kaiodsl.cp_async(buf.ptr(widx, tid), x + ((t + R.stages - 1) * 64 + tid), 4)
        pipeline.commit(R)
        read = pipeline.advance(R, pipeline.release(R, read))
        write = pipeline.advance(R, write)
    pipeline.drain(R)


@pytest.mark.parametrize("stages", [2, 3, 4])
def test_cp_async_ring_moves_every_tile(backend, rng, stages):
    n = 7
    x = rng.standard_normal(64 * n).astype(np.float32)
    y = np.full_like(x, np.nan)
    staged_copy[1, 64](x, y, n, R=tiles.Ring(stages))
    np.testing.assert_array_equal(y, x)


def test_bad_ring():
    with pytest.raises(ValueError, match="stages >= 1"):
        tiles.Ring(0)
    with pytest.raises(ValueError, match="kind in"):
        tiles.Ring(2, kind="tma")
