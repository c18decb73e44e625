"""Device-side helpers the Hopper test kernels share."""

import kaiodsl as K
from kaiodsl import u64


@K.func
def ready_barrier():
    """One mbarrier (arrival count 1), initialised by thread 0 and visible to the whole block."""
    bar = K.shared_array(u64, (1,), align=8)
    if K.thread_idx.x == 0:
        K.mbarrier_init(bar, 1)
        K.fence_mbarrier_init()
    K.syncthreads()
    return bar
