"""The machine state of one batch of blocks: thread geometry, registers, memories, operand access.

Threads of the batch are laid out block after block, each block padded to whole
warps (padding threads never run). Registers are numpy arrays over all threads,
holding unsigned bit patterns of the declared width; instructions view them as
their own type (`.view`), so a decoded operand is a live view captured once.
"""

from __future__ import annotations

import numpy as np

from ..errors import SimError
from .check import SharedShadow
from .memory import FlatSpace
from .order import ClockShadow, needs_clocks
from .numeric import BITS, NP, UINT


def shared_layout(kernel):
    """Static .shared variables in declaration order, then the dynamic extern area (aligned to 16
    bytes or the largest .align an extern declares, as ptxas places it): ({name: offset}, offset of the dynamic area = static bytes)."""
    off, offsets, externs = 0, {}, []
    for v in kernel.vars:
        if v.space == "shared":
            if v.extern:
                externs.append(v)
                continue
            off = (off + v.align - 1) // v.align * v.align
            offsets[v.name] = off
            off += v.size
    align = max([16] + [v.align for v in externs])   # the largest alignment an extern declares
    dyn_base = (off + align - 1) // align * align if externs else off
    for v in externs:  # every extern array starts at the dynamic area (CUDA semantics)
        offsets[v.name] = dyn_base
    return offsets, dyn_base


class Machine:
    def __init__(self, kernel, grid, block, blocks, gmem, param_bytes, param_offsets, gvars,
                 dyn_smem, check_uninit, check_races=True):
        self.kernel = kernel
        self.grid, self.block = tuple(grid), tuple(block)
        self.tpb = block[0] * block[1] * block[2]
        self.wpb = (self.tpb + 31) // 32
        self.tpad = self.wpb * 32
        self.nb = len(blocks)
        T = self.T = self.nb * self.tpad
        self.nwarps = self.nb * self.wpb
        t = np.arange(T)
        self.blk = t // self.tpad  # batch-local block index
        self.ltid = t % self.tpad
        self.exists = self.ltid < self.tpb
        lt = np.minimum(self.ltid, self.tpb - 1)
        bx, by, _ = block
        self.tid = (lt % bx, (lt // bx) % by, lt // (bx * by))
        blocks = np.asarray(blocks)
        self.block_ids = blocks
        gx, gy, _ = grid
        cta = (blocks % gx, (blocks // gx) % gy, blocks // (gx * gy))
        self.ctaid = tuple(c[self.blk] for c in cta)
        self.lane = (self.ltid % 32).astype(np.uint32)
        self.warp_of = (t // 32).astype(np.int64)
        self.gmem = gmem
        self.param_bytes = param_bytes
        self.param_offsets = param_offsets
        self.gvars = gvars
        self.cur = None  # instruction being executed, for errors
        self.clock = 0

        # registers: unsigned bits of the declared width (pred: bool)
        self.regs = {}
        for name, typ in kernel.regs.items():
            self.regs[name] = np.zeros(T, dtype=NP["pred"] if typ == "pred" else UINT[max(8, BITS[typ])])
        # which threads an executed instruction has written each register for (padding threads
        # never run: they count as written); `full` holds the registers written for every thread
        self.written = {}
        self.full = set()
        self.cur_mask = None  # threads executing the current instruction (None: all), for reads
        # registers an async instruction (wgmma) still writes: name -> [per-thread group, -1: none;
        # the PTX line]. They count as unwritten for those threads, so reads take the checked path.
        self.async_regs = {}
        # registers an in-flight wgmma still reads (its A fragment): name -> [per-thread group, -1: none;
        # the PTX line]. Writing one before its group completes is reported (PTX ISA 9.7.15.7).
        self.async_reads = {}

        self.shared_off, dyn_base = shared_layout(kernel)
        self.shared_size = dyn_base + dyn_smem
        self.shared = FlatSpace(self.nb, self.shared_size, "shared")
        shadow = ClockShadow if needs_clocks(kernel) else SharedShadow  # mbarriers, clusters: order.py
        self.shadow = shadow(self, self.shared.b8.size, self.shared.pad, check_uninit) \
            if check_races or check_uninit else None

        off, self.local_off = 0, {}
        for v in kernel.vars:
            if v.space == "local":
                off = (off + v.align - 1) // v.align * v.align
                self.local_off[v.name] = off
                off += v.size
        self.local_size = off
        self.local = FlatSpace(T, off, "local") if off else None

    # -- errors ----------------------------------------------------------------------------
    def thread_xyz(self, t: int) -> tuple:
        return tuple(int(c[t]) for c in self.tid)

    def block_xyz(self, t: int) -> tuple:
        return tuple(int(c[t]) for c in self.ctaid)

    def fail(self, msg: str, t: int | None = None, addr=None, space: str = "global"):
        ins = self.cur
        parts = [f"{self.kernel.name}: {msg}"]
        if ins is not None:
            parts.append(f"  PTX line {ins.line}: {ins.text}")
            if ins.source:
                parts.append(f"  source: {ins.source}")
        block = thread = None
        if t is not None:
            block, thread = self.block_xyz(t), self.thread_xyz(t)
            parts.append(f"  block {block}, thread {thread}")
        if addr is not None:
            parts.append(f"  address {int(addr):#x} ({space})")
        raise SimError("\n".join(parts), ptx_line=ins.line if ins else None,
                       source=ins.source if ins else None, block=block, thread=thread, address=addr)

    # -- operands --------------------------------------------------------------------------
    def special(self, name: str):
        base, _, comp = name[1:].partition(".")
        k = "xyz".find(comp) if comp else 0
        if base == "tid":
            return self.tid[k].astype(np.uint32)
        if base == "ntid":
            return np.uint32(self.block[k])
        if base == "ctaid":
            return self.ctaid[k].astype(np.uint32)
        if base == "nctaid":
            return np.uint32(self.grid[k])
        if base == "laneid":
            return self.lane
        if base == "warpid":
            return (self.ltid // 32).astype(np.uint32)
        if base == "nwarpid":
            return np.uint32(self.wpb)
        if base in ("clock", "clock64", "globaltimer"):
            return None  # dynamic, see getter
        if base == "lanemask_eq":
            return (np.uint32(1) << self.lane).astype(np.uint32)
        if base in ("lanemask_lt", "lanemask_le", "lanemask_gt", "lanemask_ge"):
            one = np.uint64(1)
            le = ((one << (self.lane.astype(np.uint64) + one)) - one).astype(np.uint32)
            lt = ((one << self.lane.astype(np.uint64)) - one).astype(np.uint32)
            return {"lanemask_lt": lt, "lanemask_le": le, "lanemask_gt": ~le,
                    "lanemask_ge": ~lt}[base].astype(np.uint32)
        from .ops_cluster import special
        v = special(self, base, k)
        if v is None:
            raise KeyError(name)
        return v

    def getter(self, op, typ: str):
        """A zero-argument function giving operand `op` as numpy values of PTX type `typ`."""
        kind = op[0]
        dt = NP[typ]
        if kind == "reg":
            name = op[1]
            reg = self.regs.get(name)
            if reg is None:
                base = name[1:].partition(".")[0]
                if base in ("clock", "clock64", "globaltimer"):
                    return lambda: dt(self.clock) if dt is not np.bool_ else True
                try:
                    val = self.special(name)
                except KeyError:
                    raise SimError(f"PTX line {self.cur.line}: undeclared register {name}: "
                                   f"{self.cur.text}", ptx_line=self.cur.line) from None
                val = np.asarray(val).astype(UINT[BITS[typ]] if typ != "pred" else bool).view(dt) \
                    if typ != "pred" else val
                return lambda: val
            return self._checked(name, self._reg_reader(reg, typ))
        if kind == "not":
            reg = self.regs[op[1]]
            return self._checked(op[1], lambda: ~reg)
        if kind in ("int", "fbits", "float"):
            val = self.immediate(op, typ)
            return lambda: val
        if kind == "name":
            val = self.symbol_address(op[1])
            val = np.asarray(val).astype(dt)
            return lambda: val
        raise SimError(f"PTX line {self.cur.line}: operand {op} not allowed here: {self.cur.text}",
                       ptx_line=self.cur.line)

    def _written(self, name):
        w = self.written.get(name)
        if w is None:
            w = self.written[name] = ~self.exists
        return w

    def _checked(self, name, read):
        """Wrap a register reader: reading it for a thread that no executed instruction wrote
        it for is an error (on the GPU the value is whatever the register held)."""
        full = self.full
        w = self._written(name)

        def checked():
            if name not in full:
                mask = self.cur_mask
                bad = ~w if mask is None else mask & ~w
                if bad.any():
                    self._unwritten(name, int(np.argmax(bad)))
                if mask is None:
                    full.add(name)
            return read()
        return checked

    def _unwritten(self, name, t):
        rec = self.async_regs.get(name)
        if rec is not None and rec[0][t] >= 0:
            self._in_flight(name, t, "reads")
        self.fail(f"reads register {name}, which no executed instruction has written for this thread "
                  f"(a write skipped by a predicate or a branch leaves it unwritten; on the GPU its "
                  f"value is undefined)", t)

    def _in_flight(self, name, t, verb):
        self.fail(f"{verb} register {name}, an accumulator of the wgmma.mma_async at PTX line "
                  f"{self.async_regs[name][1]}, before a wgmma.wait_group has completed that wgmma's group "
                  f"for this thread (PTX ISA 9.7.15.7: until then the register is undefined; commit the "
                  f"group and wait for it first)", t)

    def _reg_reader(self, reg, typ):
        if typ == "pred" or reg.dtype == np.bool_:
            return lambda: reg
        dt = NP[typ]
        w = BITS[typ]
        if reg.dtype.itemsize * 8 == w:
            view = reg.view(dt)
            return lambda: view
        if reg.dtype.itemsize * 8 > w:  # read the low bits (st.u8 from %r, cvt.u8 from %rs)
            u = UINT[w]
            return lambda: reg.astype(u).view(dt)
        u = UINT[w]
        return lambda: reg.astype(u).view(dt)

    def immediate(self, op, typ: str):
        dt = NP[typ]
        kind = op[0]
        if typ == "pred":
            return np.bool_(op[1])
        if kind == "int":
            v = op[1]
            if typ in ("f16", "f32", "f64"):
                return dt(v)
            w = BITS[typ]
            return np.array(v & ((1 << w) - 1), dtype=UINT[w]).view(dt)[()]
        if kind == "fbits":
            bits, width = op[1], op[2]
            f = np.array(bits, dtype=UINT[width]).view(np.float32 if width == 32 else np.float64)[()]
            if typ in ("f32", "f64", "f16"):
                return dt(f)
            return np.array(bits & ((1 << BITS[typ]) - 1), dtype=UINT[BITS[typ]]).view(dt)[()]
        if kind == "float":
            if typ in ("f16", "f32", "f64"):
                return dt(op[1])
            return np.asarray(op[1], dtype=np.float32 if BITS[typ] == 32 else np.float64).view(dt)[()]
        raise KeyError(kind)

    def setter(self, op, typ: str):
        """A function (value, mask) storing into register operand `op` (sink `_` discards)."""
        if op[0] == "sink":
            return lambda v, m: None
        if op[0] != "reg" or op[1] not in self.regs:
            raise SimError(f"PTX line {self.cur.line}: cannot write operand {op}: {self.cur.text}",
                           ptx_line=self.cur.line)
        name = op[1]
        reg = self.regs[name]
        rdt = reg.dtype
        rbytes = rdt.itemsize
        full = self.full
        w = self._written(name)
        reads = self.async_reads

        def put(val, mask):
            v = np.asarray(val)
            if v.dtype != rdt:
                if rdt == np.bool_:
                    v = v.astype(bool)
                elif v.dtype.itemsize == rbytes:
                    v = v.view(rdt)
                else:
                    if v.dtype.kind == "f":
                        v = v.view(UINT[v.dtype.itemsize * 8])
                    v = v.astype(rdt)
            if name not in full and name in self.async_regs:
                busy = self.async_regs[name][0] >= 0
                busy = busy if mask is None else busy & mask
                if busy.any():
                    self._in_flight(name, int(np.argmax(busy)), "writes")
            if reads and name in reads:
                busy = reads[name][0] >= 0
                busy = busy if mask is None else busy & mask
                if busy.any():
                    self.fail(f"writes register {name}, an A fragment register that the wgmma.mma_async at PTX "
                              f"line {reads[name][1]} reads, before a wgmma.wait_group has completed that "
                              f"wgmma's group for this thread (PTX ISA 9.7.15.7: the wgmma may still be reading "
                              f"it; wait for the group first, or build the next fragment in other registers)",
                              int(np.argmax(busy)))
            if mask is None:
                reg[...] = v
            else:
                np.copyto(reg, v, where=mask)
            if name not in full:
                if mask is None:
                    full.add(name)
                else:
                    np.logical_or(w, mask, out=w)
                    if w.all():
                        full.add(name)
        return put

    def symbol_address(self, name: str) -> int:
        if name in self.shared_off:
            return self.shared_off[name]
        if name in self.local_off:
            return self.local_off[name]
        if name in self.gvars:
            return self.gvars[name]
        if name in self.param_offsets:
            return self.param_offsets[name][0]
        raise SimError(f"PTX line {self.cur.line}: unknown symbol {name}: {self.cur.text}",
                       ptx_line=self.cur.line)
