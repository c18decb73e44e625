"""kaiodsl.ops: the op library, written in kaiodsl (see the README's op table).

Every op validates its inputs before launching (kaiodsl.ArgumentError names the argument and
its value), has a plain numpy reference (``reference_*``), and an entry in benchmarks/.
"""

from .aliases import (KAIO_NAMES, matmul_tc, matmul_tc_async, matmul_tc_bf16,
                      matmul_tc_bf16_async)
from .backward import matmul_backward, reference_matmul_backward
from .int4_pack import dequantize, from_gptq, pack_int4, quantize_int4, unpack_int4
from .matmul import GemmConfig, matmul, matmul_config, matmul_kernel_for, reference_matmul
from .matmul_int4 import matmul_int4, reference_matmul_int4
from .matmul_w8a16 import matmul_w8a16, reference_matmul_w8a16
from .matmul_int8 import (int8_config, matmul_int8, matmul_w8a8, reference_matmul_int8,
                          reference_matmul_w8a8)
from .qkv import qkv_project, qkv_project_int4, qkv_project_int8, reference_qkv
from .quantize import quantize_per_token, reference_quantize_per_token

__all__ = ["GemmConfig", "KAIO_NAMES", "dequantize", "from_gptq", "int8_config", "matmul", "matmul_backward",
           "matmul_config", "matmul_int4", "matmul_int8", "matmul_kernel_for", "matmul_tc", "matmul_tc_async",
           "matmul_tc_bf16", "matmul_tc_bf16_async", "matmul_w8a16", "matmul_w8a8", "pack_int4", "qkv_project",
           "qkv_project_int4", "qkv_project_int8", "quantize_int4", "quantize_per_token", "reference_matmul",
           "reference_matmul_backward", "reference_matmul_int4", "reference_matmul_int8", "reference_matmul_w8a16",
           "reference_matmul_w8a8", "reference_qkv", "reference_quantize_per_token", "unpack_int4"]
