"""kaiodsl.nn: modules on kaiodsl's kernels (imports torch). See docs/torch.md."""

from . import functional
from .modules import FusedQKV, Linear
from .quantized import (Int4Linear, Int8Linear, W8A16Linear, calibrate_smoothquant, quantize_per_channel_int8,
                        smoothquant_factors)

__all__ = ["FusedQKV", "Int4Linear", "Int8Linear", "Linear", "W8A16Linear", "calibrate_smoothquant",
           "functional", "quantize_per_channel_int8", "smoothquant_factors"]
