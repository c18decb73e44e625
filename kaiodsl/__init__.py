"""kaiodsl: write NVIDIA GPU kernels in Python; read the PTX they become; run them on the GPU or the simulator."""

__version__ = "0.1.0"

from .errors import (ArgumentError, CompileError, CudaError, IndexOverflowWarning, KaioError,  # noqa: E402
                     KaioWarning, LaunchError, LinkError, SimError)
from .types import (Const, Ptr, bf16, bf16x2, bool_, e4m3, e5m2, f16, f16x2, f32, f64,  # noqa: E402
                    i8, i16, i32, i64, u8, u16, u32, u64)
from .frontend.decorator import func, kernel  # noqa: E402
from .lang.core import (bitcast, block_dim, block_idx, cast, grid_dim, lane_id, saturate_cast,  # noqa: E402
                        static_range, thread_idx, truncate_cast, unsigned, warp_id, where)
from .lang.math import (ceil, cos, exp, exp2, fast, floor, fma, log, log2, reciprocal,  # noqa: E402
                        round_even, rsqrt, sin, sqrt, tanh, trunc)
from .lang.memory import (dynamic_shared, load, local_array, shared_address, shared_array,  # noqa: E402
                          store)
from .lang.sync import barrier, barrier_arrive, fence, nanosleep, syncthreads, syncwarp  # noqa: E402
from .lang.warp import (activemask, popc, shfl_down, shfl_idx, shfl_up, shfl_xor, vote_all,  # noqa: E402
                        vote_any, vote_ballot, vote_uni)
from .lang.atomic import (atomic_add, atomic_and, atomic_cas, atomic_exch, atomic_max,  # noqa: E402
                          atomic_min, atomic_or, atomic_xor)
from .lang.asm import asm  # noqa: E402
from .lang.tensor import (FragmentLayout, cp_async, cp_async_commit, cp_async_wait,  # noqa: E402
                          cp_async_wait_all, frag_coord, frag_elements, fragment_layout, ldmatrix,
                          lop3, lop3_lut, mma, mma_zeros, pack_b32, pack_fp8x2, pack_half2, prmt,
                          stmatrix, to_tf32, unpack_b32, unpack_half2)
from .lang.hopper import (bulk_commit, bulk_load, bulk_reduce, bulk_store, bulk_wait,  # noqa: E402
                          cluster_arrive, cluster_count, cluster_ctaid, cluster_ctarank, cluster_dim,
                          cluster_idx, cluster_size, cluster_sync, cluster_wait, elect_sync,
                          fence_mbarrier_init, fence_proxy_async, griddep_launch_dependents, griddep_wait,
                          load_cluster, mapa, mbarrier_arrive, mbarrier_arrive_cluster,
                          mbarrier_arrive_expect_tx, mbarrier_expect_tx, mbarrier_init, mbarrier_inval,
                          mbarrier_test_wait, mbarrier_try_wait, mbarrier_wait, setmaxnreg, store_cluster)
from .lang.tma import tma_load, tma_prefetch, tma_store  # noqa: E402
from .lang.wgmma import (wgmma, wgmma_commit, wgmma_coord, wgmma_desc, wgmma_desc_add, wgmma_fence,  # noqa: E402
                         wgmma_wait, wgmma_zeros)
from . import tiles  # noqa: E402
from .lang.pointers import ptr_cast  # noqa: E402
from .runtime.tensormap import TensorMap  # noqa: E402
from .runtime import (DeviceArray, Stream, empty, get_backend_name, set_backend, synchronize,  # noqa: E402
                      to_device, zeros)
