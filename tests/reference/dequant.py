#!/usr/bin/env python3
"""Dequantizes raw ggml blocks with the `gguf` package (ggml's own Python implementation), as an
independent reference for the torch framework's tensor-op dequantizers.

usage: dequant.py TYPE_NAME IN.bin OUT.f32   (TYPE_NAME e.g. Q4_K; OUT is little-endian float32)
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

ty = GGMLQuantizationType[sys.argv[1]]
raw = np.fromfile(sys.argv[2], dtype=np.uint8)
dequantize(raw, ty).astype("<f4").reshape(-1).tofile(sys.argv[3])
