"""Divergence, reconvergence, loops, barriers, warp ops and atomics."""

import numpy as np

from kaiodsl.sim import run_ptx
from simkit import PROLOGUE, kernel, load_ptrs


def _run(body, arrays, block=64, grid=1, decls="", params=None, smem=0, module_decls=""):
    ptx = kernel(load_ptrs(len(arrays)) + PROLOGUE + body + "\n\tret;",
                 params=params or ("u64",) * len(arrays), decls=decls, module_decls=module_decls)
    run_ptx(ptx, "k", (grid,), (block,), arrays, smem=smem)


def test_divergence_reconverges_and_loops():
    # out[i] = sum_{j < i % 5} j, with an if/else on parity in between
    out = np.zeros(64, np.int32)
    _run("""
	rem.u32 %r1, %r0, 5;
	mov.u32 %r2, 0;
	mov.u32 %r3, 0;
$L_1:
	setp.ge.u32 %p1, %r3, %r1;
	@%p1 bra $L_2;
	add.s32 %r2, %r2, %r3;
	add.s32 %r3, %r3, 1;
	bra.uni $L_1;
$L_2:
	and.b32 %r4, %r0, 1;
	setp.eq.u32 %p2, %r4, 0;
	@%p2 bra $L_3;
	add.s32 %r2, %r2, 1000;
	bra $L_4;
$L_3:
	add.s32 %r2, %r2, 2000;
$L_4:
	// reconverged: every thread adds 1
	add.s32 %r2, %r2, 1;
	add.s64 %rd5, %rd0, %rd40;
	st.global.u32 [%rd5], %r2;""", [out])
    i = np.arange(64)
    ref = np.array([sum(range(k % 5)) for k in i]) + np.where(i % 2, 1000, 2000) + 1
    assert np.array_equal(out, ref)


def test_shared_reverse_with_barrier_and_multiple_blocks():
    out = np.zeros(256, np.float32)
    inp = np.arange(256, dtype=np.float32)
    _run("""
	mov.u32 %r1, %tid.x;
	add.s64 %rd5, %rd0, %rd40;
	ld.global.f32 %f1, [%rd5];
	mov.u32 %r2, buf;
	shl.b32 %r3, %r1, 2;
	add.s32 %r4, %r2, %r3;
	st.shared.f32 [%r4], %f1;
	bar.sync 0;
	sub.s32 %r5, 63, %r1;
	shl.b32 %r5, %r5, 2;
	add.s32 %r5, %r2, %r5;
	ld.shared.f32 %f2, [%r5];
	add.s64 %rd6, %rd1, %rd40;
	st.global.f32 [%rd6], %f2;""", [inp, out], grid=4, decls="\t.shared .align 4 .b8 buf[256];\n")
    assert np.array_equal(out, inp.reshape(4, 64)[:, ::-1].ravel())


def test_dynamic_shared_and_local():
    out = np.zeros(64, np.int32)
    _run("""
	mov.u32 %r1, %tid.x;
	mov.u32 %r2, dyn;
	shl.b32 %r3, %r1, 2;
	add.s32 %r2, %r2, %r3;
	st.shared.u32 [%r2], %r1;
	mov.u64 %rd7, loc;
	st.local.u32 [%rd7+4], %r1;
	ld.local.u32 %r6, [%rd7+4];
	ld.shared.u32 %r4, [%r2];
	add.s32 %r4, %r4, %r6;
	add.s64 %rd5, %rd0, %rd40;
	st.global.u32 [%rd5], %r4;""", [out], smem=256,
         module_decls=".extern .shared .align 16 .b8 dyn[];\n", decls="\t.local .align 8 .b8 loc[16];\n")
    assert np.array_equal(out, 2 * np.arange(64))


def test_shfl_modes():
    for mode, b, c, ref in [
        ("bfly", 1, 31, lambda l: l ^ 1),
        ("down", 3, 31, lambda l: np.where(l + 3 <= 31, l + 3, l)),
        ("up", 2, 0, lambda l: np.where(l - 2 >= 0, l - 2, l)),
        ("idx", 5, 31, lambda l: np.full_like(l, 5)),
        ("idx", 3, 0x1C1F, lambda l: (l & ~3) | 3),  # width-4 segments: segmask 0x1c
        ("down", 1, 0x181F, lambda l: np.where((l & 7) + 1 <= 7, l + 1, l)),  # width 8 segments
    ]:
        out = np.zeros(64, np.uint32)
        pred = np.zeros(64, np.uint32)
        _run(f"""
	mul.lo.u32 %r1, %r0, 10;
	shfl.sync.{mode}.b32 %r2|%p1, %r1, {b}, {c}, 0xffffffff;
	selp.u32 %r3, 1, 0, %p1;
	add.s64 %rd5, %rd0, %rd40;
	st.global.u32 [%rd5], %r2;
	add.s64 %rd6, %rd1, %rd40;
	st.global.u32 [%rd6], %r3;""", [out, pred])
        lane = np.arange(64) % 32
        src = ref(lane) + (np.arange(64) // 32) * 32
        assert np.array_equal(out, 10 * src), mode


def test_vote_and_ballot():
    out = np.zeros(64, np.uint32)
    _run("""
	and.b32 %r1, %r0, 3;
	setp.eq.u32 %p1, %r1, 0;
	vote.sync.ballot.b32 %r2, %p1, 0xffffffff;
	vote.sync.any.pred %p2, %p1, 0xffffffff;
	vote.sync.all.pred %p3, %p1, 0xffffffff;
	selp.u32 %r3, 1, 0, %p2;
	selp.u32 %r4, 2, 0, %p3;
	xor.b32 %r2, %r2, %r3;
	xor.b32 %r2, %r2, %r4;
	add.s64 %rd5, %rd0, %rd40;
	st.global.u32 [%rd5], %r2;""", [out])
    assert np.all(out == (0x11111111 ^ 1))


def test_atomics_global_and_shared():
    counts = np.zeros(4, np.int32)
    fsum = np.zeros(1, np.float32)
    olds = np.zeros(128, np.uint32)
    _run("""
	and.b32 %r1, %r0, 3;
	mul.wide.u32 %rd5, %r1, 4;
	add.s64 %rd5, %rd0, %rd5;
	atom.global.add.u32 %r2, [%rd5], 1;
	add.s64 %rd6, %rd2, %rd40;
	st.global.u32 [%rd6], %r2;
	red.global.add.f32 [%rd1], 0f3F000000;
	mov.u32 %r4, sc;
	atom.shared.max.s32 %r5, [%r4], %r0;
	atom.shared.cas.b32 %r6, [%r4+4], 0, %r0;""", [counts, fsum, olds], block=128,
         decls="\t.shared .align 4 .b8 sc[8];\n")
    assert counts.tolist() == [32, 32, 32, 32]
    assert fsum[0] == 64.0
    for q in range(4):  # old values per counter are a permutation of 0..31
        assert sorted(olds[q::4].tolist()) == list(range(32))
