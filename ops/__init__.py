"""kaiodsl.ops: the op library, written in kaiodsl (see the README's op table).

Every op validates its inputs before launching (kaiodsl.ArgumentError names the argument and
its value), has a plain numpy reference (``reference_*``), and an entry in benchmarks/.
"""

import warnings as _warnings

from kaiodsl.errors import IndexOverflowWarning as _IndexOverflowWarning

# The op wrappers bound every 32-bit product their kernels form (a row inside a tile times a leading
# dimension, a k index below K); where a bound could pass 2**31 they pick the 64-bit ("wide") kernel
# variant. tests/ops/test_offsets64.py and tests/ops/test_large_gpu.py check it, so the per-line
# warning meant for user kernels is noise here.
_warnings.filterwarnings("ignore", category=_IndexOverflowWarning, module=r"kaiodsl\.ops(\.|$)")

from .aliases import (KAIO_NAMES, matmul_tc, matmul_tc_async, matmul_tc_bf16,
                      matmul_tc_bf16_async)
from .attention import attention, attention_backward, reference_attention, reference_attention_backward
from .attention_kaio import (attention_flash, attention_flash_backward, attention_flash_causal, attention_tc,
                             attention_tc_causal)
from .attention_bwd import BwdConfig
from .attention_bwd_sm90 import Sm90BwdConfig
from .attention_fwd import FwdConfig
from .attention_sm90 import Sm90AttnConfig
from .backward import matmul_backward, reference_matmul_backward
from .decode_gemm import DecodeConfig
from .gemm_sm90 import Sm90Config
from .int4_pack import dequantize, from_gptq, pack_int4, quantize_int4, unpack_int4
from .matmul import (GemmConfig, matmul, matmul_choice, matmul_config, matmul_heuristic, matmul_kernel_for,
                     reference_matmul)
from .matmul_fp8 import fp8_values, matmul_fp8, reference_matmul_fp8
from .matmul_int4 import matmul_int4, reference_matmul_int4
from .matmul_w8a16 import matmul_w8a16, reference_matmul_w8a16
from .matmul_int8 import (int8_config, matmul_int8, matmul_w8a8, reference_matmul_int8,
                          reference_matmul_w8a8)
from .qkv import qkv_project, qkv_project_int4, qkv_project_int8, reference_qkv
from .quantize import quantize_per_token, reference_quantize_per_token

__all__ = ["attention", "attention_backward", "attention_flash", "attention_flash_backward", "attention_flash_causal",
           "attention_tc", "attention_tc_causal", "reference_attention", "reference_attention_backward",
           "BwdConfig", "DecodeConfig", "FwdConfig", "GemmConfig", "Sm90AttnConfig", "Sm90BwdConfig", "Sm90Config", "KAIO_NAMES", "dequantize", "fp8_values", "from_gptq", "int8_config", "matmul", "matmul_backward",
           "matmul_choice", "matmul_config", "matmul_heuristic", "matmul_fp8", "matmul_int4", "matmul_int8", "matmul_kernel_for", "matmul_tc", "matmul_tc_async",
           "matmul_tc_bf16", "matmul_tc_bf16_async", "matmul_w8a16", "matmul_w8a8", "pack_int4", "qkv_project",
           "qkv_project_int4", "qkv_project_int8", "quantize_int4", "quantize_per_token", "reference_matmul",
           "reference_matmul_backward", "reference_matmul_fp8", "reference_matmul_int4", "reference_matmul_int8", "reference_matmul_w8a16",
           "reference_matmul_w8a8", "reference_qkv", "reference_quantize_per_token", "unpack_int4"]
