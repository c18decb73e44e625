"""Every Hopper builtin assembles through nvJitLink for sm_90a; each is refused, at the user's line,
where its arch predicate says it does not exist; bad arguments are CompileErrors that say what to write."""

import pytest

import kaiodsl
from kaiodsl import Const, Ptr, bf16, f16, f32, i32, u32, u64

W = kaiodsl  # short alias inside kernels


@kaiodsl.kernel(block_size=128)
def every(out: Ptr[f32], outi: Ptr[u32], WHAT: Const, ARG: Const = 0):
    s = W.shared_array(f16, (64 * 64,), align=1024)
    bar = W.shared_array(u64, (2,), align=8)
    t = W.thread_idx.x
    if WHAT == "mbarrier":
        if t == 0:
            W.mbarrier_init(bar, 128)
            W.fence_mbarrier_init()
        W.syncthreads()
        st = W.mbarrier_arrive(bar)
        outi[t] = W.u32(st & 1)
        W.mbarrier_arrive(bar.ptr(1), 2)
        W.mbarrier_expect_tx(bar, 64)
        outi[t + 128] = W.u32(W.mbarrier_test_wait(bar, 0)) + W.u32(W.mbarrier_try_wait(bar.ptr(1), 1))
        W.mbarrier_wait(bar, 0)
        W.mbarrier_inval(bar)
    elif WHAT == "bulk":
        if t == 0:
            W.mbarrier_init(bar, 1)
        W.fence_proxy_async("all")
        W.syncthreads()
        if t == 0:
            W.mbarrier_arrive_expect_tx(bar, 256)
            W.bulk_load(s, out, 256, bar)
        W.mbarrier_wait(bar, 0)
        W.fence_proxy_async()
        if t == 0:
            W.bulk_store(out, s, 256)
            W.bulk_reduce(out, s, 256, "add")
            W.bulk_reduce(outi, s, 256, "max")
            W.bulk_reduce(outi, s, 256, "xor")
            W.bulk_commit()
            W.bulk_wait(0, read=True)
            W.bulk_wait(0)
        W.fence_proxy_async("global")
    elif WHAT == "warpspec":
        if t < 64:
            W.setmaxnreg(40, False)
        else:
            W.setmaxnreg(232, True)
        if W.elect_sync():
            outi[t] = W.u32(1)
        W.griddep_wait()
        W.griddep_launch_dependents()
    elif WHAT == "cluster":
        r = W.cluster_ctarank()
        other = (r + 1) % W.cluster_size()
        if t == 0:
            W.mbarrier_init(bar, 1)
        W.cluster_sync()
        W.store_cluster(W.mapa(bar.ptr(1), other), W.u64(t))
        W.mbarrier_arrive_cluster(W.mapa(bar, other))
        W.cluster_arrive(relaxed=True)
        W.cluster_wait()
        outi[t] = (W.cluster_ctaid("x") + W.cluster_dim("y") + W.cluster_idx("z") + W.cluster_count("x")
                   + W.u32(W.load_cluster(W.mapa(bar.ptr(1), other), u64)))
        W.cluster_arrive()
        W.cluster_wait()
    elif WHAT == "wgmma":
        n, dt, acc_t, swz = ARG
        acc = W.wgmma_zeros(n, acc_t)
        da = W.wgmma_desc(s, swz, rows=64)
        W.wgmma_fence()
        acc = W.wgmma(da, da, acc, dtype=dt, scale_d=False)
        acc = W.wgmma(da, da, acc, dtype=dt)
        W.wgmma_commit()
        acc = W.wgmma_wait(0, acc)
        for j in W.static_range(len(acc)):
            out[t * 128 + j] = W.bitcast(acc[j], f32) if acc_t == f16 else W.cast(acc[j], f32)
    elif WHAT == "wgmma_rs":
        dt = ARG
        a = (outi[t * 4], outi[t * 4 + 1], outi[t * 4 + 2], outi[t * 4 + 3])
        acc = W.wgmma_zeros(32, i32 if dt == "s8" else f32)
        W.wgmma_fence()
        acc = W.wgmma(a, W.wgmma_desc(s, 64), acc, dtype=dt, negate_a=dt != "s8" and dt != "u8",
                      trans_b=dt in ("f16", "bf16"))
        W.wgmma_commit()
        acc = W.wgmma_wait(0, acc)
        out[t] = W.cast(acc[3], f32)


def _wgmma_cases():
    cases = []
    for n in (8, 64, 136, 256):
        cases.append((n, f16, f32, 128))
    cases += [(16, bf16, f32, 64), (24, f16, f16, 32), (32, "tf32", f32, 0), (40, "e4m3", f32, 128),
              (48, ("e5m2", "e4m3"), f16, 128), (64, "s8", i32, 128), (80, ("u8", "s8"), i32, 32)]
    return cases


@pytest.mark.parametrize("what,arg", [("mbarrier", 0), ("bulk", 0), ("warpspec", 0), ("cluster", 0),
                                      *[("wgmma", c) for c in _wgmma_cases()],
                                      *[("wgmma_rs", d) for d in ("f16", "bf16", "tf32", "e4m3", "s8")]])
def test_assembles_for_sm90a(what, arg):
    ck = every.compile(arch="sm_90a", WHAT=what, ARG=arg)
    assert ck.registers > 0
    mixed_int = what == "wgmma" and arg[1] == ("u8", "s8")  # PTX ISA 8.4 added mixed s8/u8 wgmma
    assert ".target sm_90a" in ck.ptx and f".version {'8.4' if mixed_int else '8.0'}" in ck.ptx


@pytest.mark.parametrize("what,arg,arch,needs", [
    ("wgmma", (64, f16, f32, 128), "sm_90", "needs sm_90a (it exists on sm_90a only)"),
    ("wgmma", (64, f16, f32, 128), "sm_100a", "needs sm_90a"),
    ("warpspec", 0, "sm_90", "setmaxnreg.dec.sync.aligned.u32 needs sm_90a"),
    ("mbarrier", 0, "sm_89", "fence.mbarrier_init.release.cluster needs sm_90 or newer"),
    ("bulk", 0, "sm_89", "fence.proxy.async needs sm_90 or newer"),
    ("cluster", 0, "sm_80", "%cluster_ctarank needs sm_90 or newer"),
])
def test_arch_gate(what, arg, arch, needs):
    with pytest.raises(kaiodsl.CompileError, match=needs.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        every.compile(arch=arch, WHAT=what, ARG=arg)


def test_mbarrier_wait_before_sm90_uses_test_wait():
    @kaiodsl.kernel(block_size=32)
    def k(out: Ptr[u32]):
        bar = W.shared_array(u64, (1,), align=8)
        W.mbarrier_init(bar, 32)
        W.mbarrier_arrive(bar)
        W.mbarrier_wait(bar, 0)
        out[0] = W.u32(1)

    ptx = k.compile(arch="sm_80").ptx
    assert "mbarrier.test_wait.parity.shared.b64" in ptx and "try_wait" not in ptx
    assert ".version 7.1" in ptx


@kaiodsl.kernel(block_size=128)
def misuse(out: Ptr[f32], WHAT: Const):
    s = W.shared_array(f16, (64 * 64,), align=1024)
    d = W.wgmma_desc(s, 128)
    if WHAT == "n":
        W.wgmma(d, d, W.make if False else W.wgmma_zeros(12), dtype="f16")
    elif WHAT == "int_n":
        W.wgmma(d, d, W.wgmma_zeros(40, i32), dtype="s8")
    elif WHAT == "dtype":
        W.wgmma(d, d, W.wgmma_zeros(64), dtype="f64")
    elif WHAT == "trans_tf32":
        W.wgmma(d, d, W.wgmma_zeros(64), dtype="tf32", trans_b=True)
    elif WHAT == "swizzle":
        W.wgmma_desc(s, 96)
    elif WHAT == "none_rows":
        W.wgmma_desc(s, 0)
    elif WHAT == "setmaxnreg":
        W.setmaxnreg(100, True)
    elif WHAT == "bulk_size":
        W.bulk_store(out, s, 100)
    elif WHAT == "reduce":
        W.bulk_reduce(out, s, 256, "xor")
    elif WHAT == "mbar_global":
        W.mbarrier_init(out, 1)
    elif WHAT == "pin_entry":
        W.setmaxnreg(24, False, pin_entry=1)
    elif WHAT == "nanosleep":
        W.nanosleep(2000000)


@pytest.mark.parametrize("what,msg", [
    ("n", "wgmma_zeros\\(\\): n must be a multiple of 8"), ("int_n", "N must be one of \\[8, 16, 24, 32, 48"),
    ("dtype", "dtype must be one of"), ("trans_tf32", "trans_a/trans_b exist for f16/bf16 only"),
    ("swizzle", "swizzle must be 0 \\(none\\), 32, 64 or 128"), ("none_rows", "swizzle=0 needs rows="),
    ("setmaxnreg", "multiple of 8 in 24..256"), ("bulk_size", "positive multiple of 16 bytes"),
    ("reduce", "op 'xor' on f32 is not a cp.reduce.async.bulk form"), ("mbar_global", "must be a shared pointer"),
    ("pin_entry", "pin_entry must be True or False, got 1"), ("nanosleep", "ns must be 0..1000000, got 2000000"),
])
def test_api_errors(what, msg):
    with pytest.raises(kaiodsl.CompileError, match=msg) as e:
        misuse.compile(arch="sm_90a", WHAT=what)
    assert "test_hp_builtins.py" in str(e.value)


def test_descriptor_fields_follow_the_ptx_isa_format():
    from kaiodsl.lang.wgmma import descriptor_fields
    d = descriptor_fields(128)
    assert d >> 62 == 1 and (d >> 32) & 0x3FFF == 1024 >> 4
    d = descriptor_fields(0, rows=64)
    assert d >> 62 == 0 and (d >> 16) & 0x3FFF == 64 * 16 >> 4 and (d >> 32) & 0x3FFF == 128 >> 4
    assert descriptor_fields(32) >> 62 == 3 and descriptor_fields(64) >> 62 == 2


def test_wgmma_coord_covers_the_tile_once():
    from kaiodsl.lang.wgmma import wgmma_coord
    seen = {wgmma_coord(i, th) for th in range(128) for i in range(64)}
    assert seen == {(r, c) for r in range(64) for c in range(128)}


@kaiodsl.kernel(block_size=32)
def desc_pairs(out: Ptr[u64], base: i32, SWZ: Const, MAJOR: Const, ROWS: Const, STEPS: Const):
    s = W.shared_array(f16, (64 * 256,), align=1024)
    t = W.thread_idx.x
    p = s.ptr(base * 64 * t)                        # a dynamic start (the lane's own tile)
    d0 = W.wgmma_desc(p, SWZ, rows=ROWS, major=MAJOR)
    for i in W.static_range(len(STEPS)):
        out[(2 * i) * 32 + t] = W.wgmma_desc(p + STEPS[i] // 2, SWZ, rows=ROWS, major=MAJOR)
        out[(2 * i + 1) * 32 + t] = W.wgmma_desc_add(d0, STEPS[i])


@pytest.mark.parametrize("swz,major,rows", [(128, "k", 64), (128, "mn", 160), (64, "k", 32), (0, "k", 16)])
def test_wgmma_desc_add_is_the_descriptor_further_on(hopper, swz, major, rows):
    """wgmma_desc_add(wgmma_desc(p), n) has the bits of wgmma_desc(p + n bytes), on both backends."""
    import numpy as np
    steps = (32, 96, 16 * 128, 64 * 128 + 32, 3 * 160 * 128)
    out = np.zeros(2 * len(steps) * 32, np.uint64)
    desc_pairs[1, 32](out, 1, SWZ=swz, MAJOR=major, ROWS=rows, STEPS=steps)
    pairs = out.reshape(len(steps), 2, 32)
    np.testing.assert_array_equal(pairs[:, 1], pairs[:, 0])
    assert (pairs[:, 0] != 0).all()


def test_wgmma_desc_add_is_one_add_from_a_built_descriptor():
    ptx = desc_pairs.compile(arch="sm_90a", SWZ=128, MAJOR="k", ROWS=64, STEPS=(32,)).ptx
    assert ptx.count("and.b32") == 2          # the second descriptor's address is not masked again


@kaiodsl.kernel(block_size=32)
def desc_misuse(out: Ptr[u64], WHAT: Const):
    s = W.shared_array(f16, (64 * 64,), align=1024)
    d = W.wgmma_desc(s, 128)
    if WHAT == "odd":
        out[0] = W.wgmma_desc_add(d, 40)
    else:
        out[0] = W.wgmma_desc_add(out[1], 32.0)


@pytest.mark.parametrize("what,msg", [("odd", "nbytes must be a compile-time multiple of 16"),
                                      ("float", "nbytes must be a compile-time multiple of 16")])
def test_wgmma_desc_add_errors(what, msg):
    with pytest.raises(kaiodsl.CompileError, match=msg) as e:
        desc_misuse.compile(arch="sm_90a", WHAT=what)
    assert "test_hp_builtins.py" in str(e.value)


@kaiodsl.kernel(block_size=384)
def pinned(out: Ptr[u32], PIN: Const):
    t = W.thread_idx.x
    if t < 128:
        W.setmaxnreg(24, False, pin_entry=PIN)
    else:
        W.setmaxnreg(240, True, pin_entry=PIN)
        out[t] = W.u32(1)


@pytest.mark.parametrize("pin", [False, True])
def test_setmaxnreg_pin_entry_declares_maxnreg(pin):
    """pin_entry=True: the kernel declares .maxnreg 65536 / 384 = 168 (rounded down to 8), the budget
    setmaxnreg redistributes; without it there is no such directive."""
    ptx = pinned.compile(arch="sm_90a", PIN=pin).ptx
    directives = [line for line in ptx.splitlines() if line.startswith(".maxnreg")]
    assert directives == ([".maxnreg 168"] if pin else [])
