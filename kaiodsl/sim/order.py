"""Happens-before for shared memory in kernels that synchronize through mbarriers or clusters.

check.SharedShadow forgets a block's accesses at each bar.sync. An mbarrier orders less: only the
threads that arrived on a phase before the threads that then wait on that phase (PTX ISA, memory
consistency model: mbarrier.arrive has release, a successful test_wait/try_wait acquire semantics),
and barrier.cluster and ld/st.shared::cluster reach the shared memory of the other CTAs of a
cluster. A kernel with any of these gets ClockShadow: vector clocks, each thread holding one epoch
per thread of its cluster. A release (mbarrier arrive, barrier.cluster.arrive, a bar.sync arrival,
bar.warp.sync) publishes the thread's clocks and starts its next epoch; an acquire (a wait that
succeeds on the phase, barrier.cluster.wait, a bar.sync that releases) takes the maximum with what
was published. An access by thread u in u's epoch c is ordered before thread t's access iff t's
clock of u is at least c. Per shared byte: the last write, and the reads and atomic updates since
it, each one (thread, epoch), or a row of epochs per cluster thread once several unordered threads
read it (the read-shared state of FastTrack, Flanagan and Freund, PLDI 2009).
"""

from __future__ import annotations

import numpy as np

from .check import MANY, NONE, SharedShadow

CLOCK_ENTRIES = 1 << 23  # threads x cluster threads of clocks one batch may hold (32 MB)


def needs_clocks(kernel) -> bool:
    """Whether the kernel orders shared memory by more than bar.sync (mbarriers, clusters)."""
    return any(i.opcode.startswith(("mbarrier.", "barrier.cluster"))
               or (i.opcode.startswith(("ld.", "st.")) and ".shared::cluster" in i.opcode)
               for i in kernel.instrs)


class Clocks:
    """vc[t, d]: the epoch of cluster thread d that thread t has synchronized with (-1: none)."""

    def __init__(self, m):
        from .ops_cluster import setup

        if not hasattr(m, "cluster_rank"):
            setup(m, getattr(m, "cluster", None) or (1, 1, 1))
        self.dom = (np.asarray(m.cluster_rank)[m.blk] * m.tpad + m.ltid).astype(np.int64)
        self.base = (np.asarray(m.cluster_first)[m.blk] * m.tpad).astype(np.int64)  # thread of d = 0
        self.D = m.cluster_size * m.tpad
        self.vc = np.full((m.T, self.D), -1, np.int32)
        self.vc[np.arange(m.T), self.dom] = 0

    def own(self, t):
        return self.vc[t, self.dom[t]]

    def release(self, ti, groups):
        """Publish threads ti (not empty), one vector per group of equal ``groups`` values; each thread
        starts its next epoch. Returns (group values, [groups, D] clocks)."""
        o = np.argsort(groups, kind="stable")
        g, start = np.unique(np.asarray(groups)[o], return_index=True)
        pub = np.maximum.reduceat(self.vc[ti[o]], start, axis=0)
        self.vc[ti, self.dom[ti]] += 1
        return g, pub

    def acquire(self, ti, clocks):
        self.vc[ti] = np.maximum(self.vc[ti], clocks)


class Accesses:
    """One kind of access (writes, reads or atomics) per shared byte: one (thread, epoch) where
    owner >= 0, or where owner is MANY the row ``row`` of ``tab`` (an epoch per cluster thread)."""

    def __init__(self, n, D):
        self.owner = np.full(n, NONE, np.int32)
        self.epoch = np.zeros(n, np.int32)
        self.row = np.full(n, NONE, np.int64)
        self.tab = np.full((0, D), -1, np.int32)
        self.used, self.free = 0, []

    def late(self, B, t, ck):
        """Per access (bytes B by threads t): the earlier thread of this kind not ordered before
        it, or NONE."""
        o = self.owner[B]
        out = np.full(B.size, NONE, np.int64)
        s = np.flatnonzero(o >= 0)
        if s.size:
            bad = (o[s] != t[s]) & (ck.vc[t[s], ck.dom[o[s]]] < self.epoch[B[s]])
            out[s[bad]] = o[s[bad]]
        s = np.flatnonzero(o == MANY)
        if s.size:
            over = self.tab[self.row[B[s]]] > ck.vc[t[s]]  # [k, D]; t's own column never is
            bad = over.any(1)
            out[s[bad]] = ck.base[t[s[bad]]] + np.argmax(over[bad], 1)
        return out

    def add(self, B, t, ck):
        """Record the accesses; a byte that unordered threads (or several threads of this one
        instruction) touch becomes a row."""
        own = ck.own(t)
        o = self.owner[B]
        single = o >= 0
        ordered = (o == NONE) | (o == t)
        ordered[single] |= ck.vc[t[single], ck.dom[o[single]]] >= self.epoch[B[single]]
        srt = np.argsort(B, kind="stable")
        pair = (B[srt[1:]] == B[srt[:-1]]) & (t[srt[1:]] != t[srt[:-1]])
        shared = (o == MANY) | ~ordered
        shared[srt[1:][pair]] = True
        shared[srt[:-1][pair]] = True
        s = np.flatnonzero(shared)
        if s.size:
            new = np.unique(B[s][o[s] != MANY])
            if new.size:
                rows = self._rows(new.size)
                self.tab[rows] = -1
                prev = self.owner[new]
                has = prev >= 0
                self.tab[rows[has], ck.dom[prev[has]]] = self.epoch[new[has]]
                self.row[new], self.owner[new] = rows, MANY
            self.tab[self.row[B[s]], ck.dom[t[s]]] = own[s]
        k = np.flatnonzero(~shared)
        self.owner[B[k]], self.epoch[B[k]] = t[k], own[k]

    def clear(self, B):
        rows = self.row[B[self.owner[B] == MANY]]
        if rows.size:
            self.free.extend(np.unique(rows).tolist())
        self.owner[B] = NONE

    def _rows(self, k):
        n = min(k, len(self.free))
        got = self.free[len(self.free) - n:]
        del self.free[len(self.free) - n:]
        need = k - n
        if need:
            if self.used + need > self.tab.shape[0]:
                grown = np.full((max(self.used + need, 2 * self.tab.shape[0], 64), self.tab.shape[1]), -1,
                                np.int32)
                grown[:self.used] = self.tab[:self.used]
                self.tab = grown
            got += range(self.used, self.used + need)
            self.used += need
        return np.asarray(got, np.int64)


class ClockShadow(SharedShadow):
    """The race checker of kernels with mbarriers or clusters: accesses ordered by happens-before."""

    def __init__(self, st, nbytes: int, pad: int, uninit: bool):
        super().__init__(st, nbytes, pad, uninit)
        self.n = nbytes
        self._ck = None
        self.mb = {}       # mbarrier key -> [clocks published in the current phase, of the last completed]
        self.bars = {}     # bar.sync id -> [blocks, D] clocks published by this round's arrivals
        self.cphase = {}   # (cluster's first block, barrier.cluster phase) -> clocks published

    def _alloc(self, n):
        pass  # the plain checker's per-byte arrays are not used

    @property
    def clocks(self) -> Clocks:
        if self._ck is None:  # first use: after the batch's cluster geometry is set
            self._ck = Clocks(self.st)
            D = self._ck.D
            self.W, self.R, self.A = Accesses(self.n, D), Accesses(self.n, D), Accesses(self.n, D)
        return self._ck

    # -- accesses --------------------------------------------------------------------------
    def _check(self, kind, B, t, what):
        other = kind.late(B, t, self.clocks)
        if (other == NONE).all():
            return
        i = int(np.argmax(other != NONE))
        st = self.st
        seg, off = divmod(int(B[i]), self.pad)
        where = "" if seg == st.blk[t[i]] else f" of the CTA of block {st.block_xyz(seg * st.tpad)}"
        st.fail(f"shared-memory race: {what} shared byte {off:#x}{where}; thread "
                f"{st.thread_xyz(int(other[i]))} of block {st.block_xyz(int(other[i]))} touched it with no "
                f"synchronization between (no bar.sync, nor an mbarrier phase or barrier.cluster that it "
                f"arrived on after its access and this thread waited on before)", int(t[i]), off,
                space="shared")

    def read(self, flat, size, ti):
        B, t = self._expand(flat, size, ti)
        self.ready(B, t)
        ck = self.clocks
        self._check(self.W, B, t, "thread reads")
        self._check(self.A, B, t, "thread reads (non-atomically)")
        self.R.add(B, t, ck)

    def write(self, flat, size, ti, atomic=False, data=None):
        B, t = self._expand(flat, size, ti)
        ck = self.clocks
        verb = "thread updates atomically" if atomic else "thread writes"
        self._check(self.W, B, t, verb)
        self._check(self.R, B, t, verb)
        if self.init is not None:
            self.init[B] = True
        if atomic:
            self.A.add(B, t, ck)
            return
        self._check(self.A, B, t, verb)
        self.R.clear(B)  # every earlier access is ordered before this write: later ones check it
        self.A.clear(B)
        W = self.W
        W.owner[B], W.epoch[B] = t, ck.own(t)
        if (W.owner[B] != t).any():
            self._same_instruction(B, t, self.st.warp_of[t], data)

    # -- synchronization -------------------------------------------------------------------
    def barrier(self, blocks):
        pass

    def warp_sync(self, warps, threads=None):
        ti = np.flatnonzero(threads)
        w, pub = self.clocks.release(ti, self.st.warp_of[ti])
        self._ck.acquire(ti, pub[np.searchsorted(w, self.st.warp_of[ti])])

    def bar_arrive(self, ti, bid):
        st = self.st
        acc = self.bars.get(bid)
        if acc is None:
            acc = self.bars[bid] = np.full((st.nb, self.clocks.D), -1, np.int32)
        b, pub = self.clocks.release(ti, st.blk[ti])
        acc[b] = np.maximum(acc[b], pub)

    def bar_release(self, blocks, bid, released):
        acc = self.bars[bid]
        self.clocks.acquire(released, acc[self.st.blk[released]])
        acc[blocks] = -1

    def cluster_arrive(self, ti, relaxed):
        st = self.st
        if relaxed:  # barrier.cluster.arrive.relaxed orders no memory
            return
        key = st.cluster_first[st.blk[ti]] * (1 << 32) + st.carr[ti]
        g, pub = self.clocks.release(ti, key)
        for k, p in zip(g.tolist(), pub):
            prev = self.cphase.get(k)
            self.cphase[k] = p if prev is None else np.maximum(prev, p)

    def cluster_release(self, ti):
        st = self.st
        key = st.cluster_first[st.blk[ti]] * (1 << 32) + st.cwant[ti]
        for k in np.unique(key).tolist():
            p = self.cphase.get(k)
            if p is not None:
                self.clocks.acquire(ti[key == k], p)

    def mb_init(self, key):
        self.mb[key] = [None, None]

    def mb_release(self, key, ti):
        rec = self.mb.get(key)
        if rec is None:
            return  # not initialised: the arrive itself fails
        _, pub = self.clocks.release(ti, np.zeros(ti.size, np.int64))
        rec[0] = pub[0] if rec[0] is None else np.maximum(rec[0], pub[0])

    def mb_complete(self, key):
        rec = self.mb.get(key)
        if rec is not None:
            rec[1], rec[0] = rec[0], None

    def mb_acquire(self, key, ti):
        rec = self.mb.get(key)
        if rec is not None and rec[1] is not None:
            self.clocks.acquire(ti, rec[1])
