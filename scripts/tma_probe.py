"""Which 3-d TMA boxes end an H200 kernel with an illegal instruction (tests/hopper/test_hp_tma.py's
NaN-fill case did, 2026-12-02): f32 [3, 10, 12], box [2, 4, 4], corners with the innermost start 16-byte
aligned or not, zero or NaN fill, load only or load and store. Each case in its own process (the
error is sticky).

    python scripts/tma_probe.py          # every case, one line each
"""

import os
import subprocess
import sys

import numpy as np

CASES = {  # name: (corner, fill, store)
    "x8_zero_load": ((2, 8, 8), "zero", False), "x10_zero_load": ((2, 8, 10), "zero", False),
    "x8_nan_load": ((2, 8, 8), "nan", False), "x10_nan_load": ((2, 8, 10), "nan", False),
    "x8_zero_store": ((2, 8, 8), "zero", True), "x10_zero_store": ((2, 8, 10), "zero", True),
    "x0_nan_store": ((0, 0, 0), "nan", True), "in_x4_nan_store": ((0, 2, 4), "nan", True),
}


def one(name: str) -> None:
    import kaiodsl as K
    from kaiodsl import Ptr, i32, u32, u64

    corner, fill, store = CASES[name]

    @K.kernel(block_size=128)
    def probe(tm: K.TensorMap, out: K.TensorMap, raw: Ptr[u32], z: i32, y: i32, x: i32, STORE: K.Const):
        s = K.shared_array(u32, (32,), align=128)
        bar = K.shared_array(u64, (1,), align=8)
        t = K.thread_idx.x
        if t == 0:
            K.mbarrier_init(bar, 1)
            K.fence_mbarrier_init()
        K.syncthreads()
        if t == 0:
            K.mbarrier_arrive_expect_tx(bar, 128)
            K.tma_load(s, tm, (z, y, x), bar)
        K.mbarrier_wait(bar, 0)
        if t < 32:
            raw[t] = s[t]
        K.syncthreads()
        if STORE and t == 0:
            K.tma_store(out, (z, y, x), s)
            K.bulk_commit()
            K.bulk_wait(0)

    K.set_backend(os.environ.get("PROBE_BACKEND", "cuda"))
    a = np.arange(360, dtype=np.float32).reshape(3, 10, 12) + 1
    out = np.zeros_like(a)
    raw = np.zeros(32, np.uint32)
    probe[1, 128](K.TensorMap(a, (2, 4, 4), oob_fill=fill), K.TensorMap(out, (2, 4, 4)), raw, *corner, STORE=store)
    print(f"{name:<18} ok   raw[:4] {raw.view(np.float32)[:4]}  stored {int((out != 0).sum())}", flush=True)


def main() -> int:
    if len(sys.argv) > 1:
        one(sys.argv[1])
        return 0
    for name in CASES:
        r = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True, timeout=120)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{name:<18} FAIL {last[:150]}", flush=True)
        else:
            print(r.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
