"""Tensor maps for TMA: a tiled view of a global array, checked against the driver's rules, encoded
by cuTensorMapEncodeTiled (CUDA driver API, "Tensor Map Object Management") and cached.

Shapes, strides and boxes are given the way numpy writes them (outermost dimension first, strides
in bytes); the driver's arrays are innermost first, so ``TensorMapSpec`` stores them reversed.
Every rule the driver enforces is checked first, so a bad box or stride is an ``ArgumentError``
naming the field and its value, on any machine, before the driver sees it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from ..errors import ArgumentError, CudaError

# CUtensorMapDataType by kaiodsl / numpy element name.
DATA_TYPE = {"u8": 0, "i8": 0, "e4m3": 0, "e5m2": 0, "u16": 1, "i16": 1, "u32": 2, "i32": 3, "u64": 4,
             "i64": 5, "f16": 6, "f32": 7, "f64": 8, "bf16": 9, "tf32": 11}
ELEM_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 5: 8, 6: 2, 7: 4, 8: 8, 9: 2, 11: 4}
SWIZZLE = {0: 0, 32: 1, 64: 2, 128: 3}          # CUtensorMapSwizzle: bytes -> enum
INTERLEAVE = {0: 0, 16: 1, 32: 2}               # CUtensorMapInterleave
L2_PROMOTION = {0: 0, 64: 1, 128: 2, 256: 3}     # CUtensorMapL2promotion
OOB_FILL = {"zero": 0, "nan": 1}                 # CUtensorMapFloatOOBfill (nan: NaN requests, floats only)


@dataclass(frozen=True)
class TensorMapSpec:
    """Everything cuTensorMapEncodeTiled takes, innermost dimension first."""

    dtype: str
    address: int
    dims: tuple            # elements per dimension
    strides: tuple         # bytes, dimensions 1..rank-1
    box: tuple             # elements per dimension of one copy
    element_strides: tuple
    swizzle: int = 0       # bytes: 0, 32, 64, 128
    interleave: int = 0    # bytes: 0, 16, 32
    l2_promotion: int = 0  # bytes: 0, 64, 128, 256
    oob_fill: str = "zero"

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def elem_bytes(self) -> int:
        return ELEM_BYTES[DATA_TYPE[self.dtype]]

    @property
    def box_bytes(self) -> int:
        n = self.elem_bytes
        for b in self.box:
            n *= b
        return n

    def validate(self) -> "TensorMapSpec":
        """Raise ArgumentError naming the first field that breaks a driver rule."""
        def bad(field, value, allowed):
            raise ArgumentError(f"TensorMap {field}={value!r}: {allowed}")

        if self.dtype not in DATA_TYPE:
            bad("dtype", self.dtype, f"allowed: {', '.join(DATA_TYPE)}")
        if self.interleave not in INTERLEAVE:
            bad("interleave", self.interleave, "allowed: 0 (none), 16, 32 bytes")
        if self.swizzle not in SWIZZLE:
            bad("swizzle", self.swizzle, "allowed: 0 (none), 32, 64, 128 bytes")
        if self.l2_promotion not in L2_PROMOTION:
            bad("l2_promotion", self.l2_promotion, "allowed: 0, 64, 128, 256 bytes")
        if self.oob_fill not in OOB_FILL:
            bad("oob_fill", self.oob_fill, "allowed: 'zero', 'nan'")
        if self.oob_fill == "nan" and self.dtype not in ("f16", "bf16", "f32", "f64", "tf32"):
            bad("oob_fill", self.oob_fill, f"NaN fill needs a float dtype, not {self.dtype}")
        lo_rank = 3 if self.interleave else 1
        if not lo_rank <= self.rank <= 5:
            bad("shape", tuple(reversed(self.dims)), f"rank must be {lo_rank}..5" +
                (" with interleave" if self.interleave else ""))
        for name, seq, n in (("strides", self.strides, self.rank - 1), ("box", self.box, self.rank),
                             ("element_strides", self.element_strides, self.rank)):
            if len(seq) != n:
                bad(name, tuple(reversed(seq)), f"needs {n} entries for a rank-{self.rank} tensor")
        align = 32 if self.interleave == 32 else 16
        if self.address % align:
            bad("address", hex(self.address), f"the global address must be {align}-byte aligned")
        for d in self.dims:
            if not 0 < d <= 2**32:
                bad("shape", tuple(reversed(self.dims)), "every dimension must be 1..2^32")
        extent = self.dims[0] * self.elem_bytes
        for i, s in enumerate(self.strides):
            if s % align or not 0 < s < 2**40:
                bad("strides", tuple(reversed(self.strides)),
                    f"byte strides must be positive multiples of {align} below 2^40")
            if s < extent:
                bad("strides", tuple(reversed(self.strides)),
                    f"stride of dimension {i + 1} ({s} bytes) is smaller than the {extent} bytes below it")
            extent = s * self.dims[i + 1]
        for b in self.box:
            if not 0 < b <= 256:
                bad("box", tuple(reversed(self.box)), "every box dimension must be 1..256")
        inner = self.box[0] * self.elem_bytes
        if not self.interleave and inner % 16:
            bad("box", tuple(reversed(self.box)), f"the inner box dimension is {inner} bytes: it must be a "
                f"multiple of 16 bytes")
        if self.swizzle and not self.interleave and inner > self.swizzle:
            bad("box", tuple(reversed(self.box)), f"the inner box dimension is {inner} bytes, more than the "
                f"{self.swizzle}-byte swizzle span")
        if self.interleave == 32 and self.swizzle not in (0, 32):
            bad("swizzle", self.swizzle, "interleave=32 allows swizzle 0 or 32 only")
        for e in self.element_strides:
            if not 1 <= e <= 8:
                bad("element_strides", tuple(reversed(self.element_strides)), "each must be 1..8")
        return self

    def encode(self) -> bytes:
        """The 128-byte CUtensorMap from the driver (needs a CUDA driver)."""
        self.validate()
        try:
            from cuda.bindings import driver as cu
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise CudaError(f"cuTensorMapEncodeTiled needs cuda-python ({e})") from None
        u32, u64 = cu.cuuint32_t, cu.cuuint64_t  # some cuda-python releases take only these wrappers
        err, tmap = cu.cuTensorMapEncodeTiled(
            cu.CUtensorMapDataType(DATA_TYPE[self.dtype]), u32(self.rank), self.address,
            [u64(d) for d in self.dims], [u64(s) for s in self.strides], [u32(b) for b in self.box],
            [u32(e) for e in self.element_strides],
            cu.CUtensorMapInterleave(INTERLEAVE[self.interleave]), cu.CUtensorMapSwizzle(SWIZZLE[self.swizzle]),
            cu.CUtensorMapL2promotion(L2_PROMOTION[self.l2_promotion]),
            cu.CUtensorMapFloatOOBfill(OOB_FILL[self.oob_fill]))
        if int(err) != 0:
            from .driver import raise_error
            raise_error(err, f"cuTensorMapEncodeTiled({self})")
        return struct.pack("<16Q", *(int(w) for w in tmap.opaque))  # CUtensorMap: 16 x u64, opaque


    # -- the simulator's 128 bytes ----------------------------------------------------------------
    def sim_bytes(self) -> bytes:
        """The 128 bytes the simulator backend passes in the parameter (the driver's are opaque)."""
        pad = lambda seq, n: tuple(seq) + (0,) * (n - len(seq))  # noqa: E731
        return _SIM_FORMAT.pack(_SIM_MAGIC, DATA_TYPE[self.dtype], self.rank, SWIZZLE[self.swizzle],
                                INTERLEAVE[self.interleave], L2_PROMOTION[self.l2_promotion], OOB_FILL[self.oob_fill],
                                self.address, *pad(self.dims, 5), *pad(self.strides, 4), *pad(self.box, 5),
                                *pad(self.element_strides, 5))

    @staticmethod
    def from_sim_bytes(raw: bytes) -> "TensorMapSpec | None":
        """The spec that sim_bytes() wrote, or None when these 128 bytes are not one."""
        f = _SIM_FORMAT.unpack(bytes(raw[:128]))
        if f[0] != _SIM_MAGIC or not 1 <= f[2] <= 5:
            return None
        r = f[2]
        inv = lambda table, v: next(k for k, x in table.items() if x == v)  # noqa: E731
        dims, strides, box, es = f[8:13], f[13:17], f[17:22], f[22:27]
        return TensorMapSpec(_CANONICAL[f[1]], f[7], dims[:r], strides[:r - 1], box[:r], es[:r],
                             inv(SWIZZLE, f[3]), inv(INTERLEAVE, f[4]), inv(L2_PROMOTION, f[5]), inv(OOB_FILL, f[6]))


# The simulator's layout: magic, data type, rank, swizzle, interleave, L2, OOB-fill codes, the global
# address, dims (u64 x5), strides (u64 x4), box (u16 x5), element strides (u8 x5): innermost first.
_SIM_MAGIC = b"KTMS"
_SIM_FORMAT = struct.Struct("<4s6B6xQ5Q4Q5H5B17x")
assert _SIM_FORMAT.size == 128
_CANONICAL = {0: "u8", 1: "u16", 2: "u32", 3: "i32", 4: "u64", 5: "i64", 6: "f16", 7: "f32", 8: "f64",
              9: "bf16", 11: "tf32"}

_CACHE: dict = {}  # everything a map encodes -> (the validated TensorMapSpec, {address: the driver's bytes})
_TORCH_VIEWS: dict = {}  # TensorMap(torch tensor, ...) arguments -> what the checks made of them
_MAX_ADDRESSES = 1024  # encoded maps kept per spec: allocators hand out new addresses; keep the table bounded


def tensor_map(address: int, dtype: str, shape, box, strides=None, *, swizzle: int = 0, interleave: int = 0,
               l2_promotion: int = 0, oob_fill: str = "zero", element_strides=None) -> TensorMapSpec:
    """A validated, cached TensorMapSpec from numpy-order ``shape``/``box``/byte ``strides``
    (default: contiguous row-major). The cache key is everything the map encodes."""
    return _entry(address, dtype, shape, box, strides, swizzle, interleave, l2_promotion, oob_fill,
                  element_strides)[0]


def _entry(address, dtype, shape, box, strides, swizzle, interleave, l2_promotion, oob_fill, element_strides):
    """tensor_map's cache entry: (spec, the encodings of this spec moved to other addresses)."""
    shape, box = tuple(int(x) for x in shape), tuple(int(x) for x in box)
    if dtype not in DATA_TYPE:
        raise ArgumentError(f"TensorMap dtype={dtype!r}: allowed: {', '.join(DATA_TYPE)}")
    if strides is None:
        strides, acc = [], ELEM_BYTES[DATA_TYPE[dtype]]
        for d in reversed(shape[1:]):
            acc *= d
            strides.append(acc)
        strides = tuple(reversed(strides))
    else:
        strides = tuple(int(s) for s in strides)
        if len(strides) == len(shape):  # numpy-style strides include the innermost one
            if strides[-1] != ELEM_BYTES[DATA_TYPE[dtype]]:
                raise ArgumentError(f"TensorMap strides={strides}: the innermost dimension must be contiguous "
                                    f"({ELEM_BYTES[DATA_TYPE[dtype]]} bytes)")
            strides = strides[:-1]
    es = tuple(element_strides) if element_strides is not None else (1,) * len(shape)
    key = (address, dtype, shape, strides, box, es, swizzle, interleave, l2_promotion, oob_fill)
    entry = _CACHE.get(key)
    if entry is None:
        spec = TensorMapSpec(dtype, int(address), tuple(reversed(shape)), tuple(reversed(strides)),
                             tuple(reversed(box)), tuple(reversed(es)), swizzle, interleave, l2_promotion,
                             oob_fill).validate()
        entry = _CACHE[key] = (spec, {})
    return entry


class TensorMap:
    """A tiled TMA view of an array, passed by value to a ``kaiodsl.TensorMap`` kernel parameter.

    ``TensorMap(a, box=(64, 64), swizzle=128)``: ``a`` is a DeviceArray, torch tensor or CAI array
    (numpy under the simulator); shape, strides and dtype are the array's (numpy order). The rules
    are checked here, all but the address's (a spec at address 0, kept); a launch encodes the map at
    the array's address, checking its alignment, once per address (cached).
    As an annotation (``tm: kaiodsl.TensorMap``) it declares the parameter.
    """

    from ..types import tensormap as __kaiodsl_type__  # noqa: N815 - what the frontend reads

    __slots__ = ("array", "dtype", "shape", "strides", "box", "options", "_base", "_encoded")

    def __init__(self, array, box, *, dtype=None, swizzle: int = 0, interleave: int = 0, l2_promotion: int = 0,
                 oob_fill: str = "zero", element_strides=None):
        from .args import torch_tensor_type

        self.array = array
        key = None
        if type(array) is torch_tensor_type():  # a plain tensor's view is its dtype, sizes and strides: memoised
            key = (array.dtype, array.shape, array.stride(), box, dtype, swizzle, interleave, l2_promotion, oob_fill,
                   element_strides)
            try:
                known = _TORCH_VIEWS.get(key)
            except TypeError:  # a list box or element_strides: not a key
                known = key = None
            if known is not None:
                self.dtype, self.shape, self.strides, self.box, self.options, self._base, self._encoded = known
                return
        self._check(array, box, dtype, swizzle, interleave, l2_promotion, oob_fill, element_strides)
        if key is not None:
            if len(_TORCH_VIEWS) >= 4096:
                _TORCH_VIEWS.clear()
            # the options dict is shared by the maps of one key: nothing writes it
            _TORCH_VIEWS[key] = (self.dtype, self.shape, self.strides, self.box, self.options, self._base,
                                 self._encoded)

    def _check(self, array, box, dtype, swizzle, interleave, l2_promotion, oob_fill, element_strides):
        """Every rule but the address's (the spec at address 0, kept), before anything is launched."""
        from .args import array_scalar_type, is_array_like

        if not is_array_like(array):
            raise ArgumentError(f"TensorMap array: expected a device array, torch tensor or numpy array, "
                                f"got {type(array).__name__}")
        st = array_scalar_type(array)
        if st is None:  # a launch resolves the array like a pointer argument: its elements must be a kaiodsl type
            raise ArgumentError(f"TensorMap array: its dtype {getattr(array, 'dtype', '?')} is not a kaiodsl element "
                                f"type (allowed: {', '.join(DATA_TYPE)}; view the storage as one of them)")
        name = getattr(dtype, "name", dtype) or st.name
        if name not in DATA_TYPE:
            raise ArgumentError(f"TensorMap dtype={name!r}: allowed: {', '.join(DATA_TYPE)}")
        shape = tuple(int(x) for x in array.shape)
        self.dtype, self.shape, self.box = name, shape, tuple(int(b) for b in box)
        self.strides = _byte_strides(array, ELEM_BYTES[DATA_TYPE[name]])
        self.options = dict(swizzle=swizzle, interleave=interleave, l2_promotion=l2_promotion,
                            oob_fill=oob_fill, element_strides=element_strides)
        self._base, self._encoded = _entry(0, name, shape, self.box, self.strides, swizzle, interleave, l2_promotion,
                                           oob_fill, element_strides)

    def spec(self, address: int) -> TensorMapSpec:
        return tensor_map(address, self.dtype, self.shape, self.box, self.strides, **self.options)

    def device_bytes(self, address: int) -> bytes:
        """The driver's 128 bytes for the array at ``address``: the spec checked at construction moved
        there (encode checks the address's alignment), encoded once per address."""
        raw = self._encoded.get(address)
        if raw is None:
            raw = replace(self._base, address=int(address)).encode()
            if len(self._encoded) >= _MAX_ADDRESSES:
                self._encoded.clear()
            self._encoded[address] = raw
        return raw

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if v not in (0, "zero", None))
        return f"TensorMap({self.dtype}{list(self.shape)}, box={self.box}" + (f", {opts})" if opts else ")")


def _byte_strides(a, elem: int) -> tuple:
    if type(a).__module__.startswith("torch"):
        return tuple(int(s) * elem for s in a.stride())
    s = getattr(a, "strides", None)
    if s is None:
        cai = getattr(a, "__cuda_array_interface__", None) or {}
        s = cai.get("strides")
    if s is None:  # C-contiguous
        out, step = [], elem
        for d in reversed(tuple(a.shape)):
            out.append(step)
            step *= int(d)
        s = tuple(reversed(out))
    return tuple(int(x) for x in s)
