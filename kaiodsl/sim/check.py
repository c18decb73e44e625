"""Shared-memory shadow state: races between barriers, uninitialized reads, early cp.async reads.

Per shared byte we remember who last wrote it, who read it and who updated it
atomically since the block's last barrier, each with the warp and that warp's
`bar.warp.sync` epoch: two accesses by threads of one warp separated by a
bar.warp.sync are ordered (Volta+ independent thread scheduling: without it,
warp-synchronous code is a race). Atomics never race with atomics.

Kernels that synchronize through mbarriers or clusters get order.ClockShadow instead (vector
clocks); the hooks at the end (bar_*, cluster_*, mb_*) are what barrier instructions tell either.
"""

from __future__ import annotations

import numpy as np

NONE, MANY = -1, -2


class SharedShadow:
    def __init__(self, st, nbytes: int, pad: int, uninit: bool):
        self.st = st
        self.pad = pad
        self.pend = np.zeros(nbytes, dtype=np.int32)
        self.init = np.zeros(nbytes, dtype=bool) if uninit else None
        self._alloc(nbytes)

    def _alloc(self, n):
        full = lambda: np.full(n, NONE, dtype=np.int32)  # noqa: E731
        self.w, self.wwarp, self.wep = full(), full(), full()
        self.r, self.rwarp, self.rep = full(), full(), full()
        self.a, self.awarp, self.aep = full(), full(), full()
        self.warp_epoch = np.zeros(self.st.nwarps, dtype=np.int32)

    # -- helpers ---------------------------------------------------------------------------
    def _expand(self, flat, size, ti):
        B = (flat[:, None] + np.arange(size)).reshape(-1)
        t = np.repeat(ti, size)
        return B, t

    def _unordered(self, tid, warp, ep, t, w, e):
        return (tid != NONE) & (tid != t) & ~((warp == w) & (ep < e))

    def _fail(self, bad, B, t, prev, what):
        i = int(np.argmax(bad))
        other = int(prev[B[i]])
        st = self.st
        seg, off = divmod(int(B[i]), self.pad)
        who = f"thread {st.thread_xyz(other)}" if other >= 0 else "several threads"
        st.fail(f"shared-memory race: {what} shared byte {off:#x}; {who} touched it since the last "
                f"barrier (bar.sync) without synchronization", int(t[i]), off, space="shared")

    # -- accesses --------------------------------------------------------------------------
    def ready(self, B, t):
        """A read of bytes B by threads t: no cp.async still in flight to them; initialised (opt-in)."""
        if self.pend[B].any():
            i = int(np.argmax(self.pend[B] > 0))
            self.st.fail("reads a cp.async destination before the cp.async.wait_group/wait_all that "
                         "completes the copy", int(t[i]), int(B[i]) % self.pad, space="shared")
        if self.init is not None and not self.init[B].all():
            i = int(np.argmin(self.init[B]))
            self.st.fail("reads shared memory that nothing wrote (uninitialized)", int(t[i]),
                         int(B[i]) % self.pad, space="shared")

    def read(self, flat, size, ti):
        B, t = self._expand(flat, size, ti)
        self.ready(B, t)
        warp = self.st.warp_of[t]
        ep = self.warp_epoch[warp]
        bad = self._unordered(self.w[B], self.wwarp[B], self.wep[B], t, warp, ep)
        if bad.any():
            self._fail(bad, B, t, self.w, "thread reads")
        bad = self._unordered(self.a[B], self.awarp[B], self.aep[B], t, warp, ep)
        if bad.any():
            self._fail(bad, B, t, self.a, "thread reads (non-atomically)")
        cur = self.r[B]
        new = np.where((cur == NONE) | (cur == t), t, MANY).astype(np.int32)
        self.r[B] = new
        self.r[B[self.r[B] != new]] = MANY
        cw = self.rwarp[B]
        neww = np.where((cw == NONE) | (cw == warp), warp, MANY).astype(np.int32)
        self.rwarp[B] = neww
        self.rwarp[B[self.rwarp[B] != neww]] = MANY
        self.rep[B] = ep

    def write(self, flat, size, ti, atomic=False, data=None):
        """data: the bytes written, [threads, size] uint8 (compared when threads of one warp
        write one byte in one instruction)."""
        B, t = self._expand(flat, size, ti)
        warp = self.st.warp_of[t]
        ep = self.warp_epoch[warp]
        verb = "thread updates atomically" if atomic else "thread writes"
        bad = self._unordered(self.w[B], self.wwarp[B], self.wep[B], t, warp, ep)
        if bad.any():
            self._fail(bad, B, t, self.w, verb)
        bad = self._unordered(self.r[B], self.rwarp[B], self.rep[B], t, warp, ep)
        if bad.any():
            self._fail(bad, B, t, self.r, verb)
        if self.init is not None:
            self.init[B] = True
        if atomic:
            self.a[B] = t
            self.a[B[self.a[B] != t]] = MANY
            self.awarp[B], self.aep[B] = warp, ep
            return
        bad = self._unordered(self.a[B], self.awarp[B], self.aep[B], t, warp, ep)
        if bad.any():
            self._fail(bad, B, t, self.a, verb)
        self.w[B] = t
        if (self.w[B] != t).any():
            self._same_instruction(B, t, warp, data)
        self.wwarp[B], self.wep[B] = warp, ep

    def _same_instruction(self, B, t, warp, data):
        """Several threads store to one byte in one instruction. Within one warp the stores are
        one access and one of them lands (CUDA Programming Guide, SIMT architecture): equal values
        are no hazard, as for compute-sanitizer racecheck; different values leave an undefined
        result. Different warps execute the instruction independently: a write-write race."""
        o = np.argsort(B, kind="stable")
        dup = B[o[1:]] == B[o[:-1]]
        i, j = o[1:][dup], o[:-1][dup]
        cross = warp[i] != warp[j]
        vals = None if data is None else np.asarray(data, np.uint8).reshape(-1)
        differ = np.ones(i.shape, bool) if vals is None else vals[i] != vals[j]
        st = self.st
        for bad, why in ((cross, "threads of different warps write it in one instruction, with no "
                                 "barrier between the warps"),
                         (differ, "threads of one warp write different values to it in one "
                                  "instruction: which one lands is undefined")):
            if bad.any():
                k = int(np.argmax(bad))
                a, b = int(t[i[k]]), int(t[j[k]])
                blocks = "" if st.blk[a] == st.blk[b] else \
                    f" of blocks {st.block_xyz(b)} and {st.block_xyz(a)} (shared::cluster)"
                st.fail(f"shared-memory race on shared byte {int(B[i[k]]) % self.pad:#x}: threads "
                        f"{st.thread_xyz(b)} and {st.thread_xyz(a)}{blocks}: {why}", a,
                        int(B[i[k]]) % self.pad, space="shared")

    def mark_pending(self, flat, size, ti, delta):
        B, _ = self._expand(flat, size, ti)
        np.add.at(self.pend, B, delta)

    # -- synchronization -------------------------------------------------------------------
    def barrier(self, blocks):
        """bar.sync released for these batch-local block indices: a new epoch for them."""
        for arr in (self.w, self.r, self.a, self.wwarp, self.rwarp, self.awarp):
            arr.reshape(-1, self.pad)[blocks] = NONE

    def warp_sync(self, warps, threads=None):
        self.warp_epoch[warps] += 1

    # bar.sync (arrivals, then the release of a block's barrier), barrier.cluster, mbarriers: this
    # checker forgets a block at each bar.sync and needs none of the rest (a kernel that has them
    # gets order.ClockShadow).
    def bar_arrive(self, ti, bid):
        pass

    def bar_release(self, blocks, bid, released):
        self.barrier(blocks)

    def cluster_arrive(self, ti, relaxed):
        pass

    def cluster_release(self, ti):
        self.barrier(np.unique(self.st.blk[ti]))

    def mb_init(self, key):
        pass

    def mb_release(self, key, ti):
        pass

    def mb_complete(self, key):
        pass

    def mb_acquire(self, key, ti):
        pass
