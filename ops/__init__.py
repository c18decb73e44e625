"""kaiodsl.ops: the op library, written in kaiodsl.

| op | what |
|---|---|
| matmul | f16/bf16 GEMM, f32 accumulation, sync or cp.async-pipelined |
| quantize_per_token | f16/bf16 -> int8 + per-row scales |
"""

from .matmul import GemmConfig, matmul, matmul_config, matmul_kernel_for, reference_matmul
from .quantize import quantize_per_token, reference_quantize_per_token

__all__ = ["GemmConfig", "matmul", "matmul_config", "matmul_kernel_for", "reference_matmul", "quantize_per_token",
           "reference_quantize_per_token"]
