"""The published numbers of spec section 3 that `report.md` puts beside ours.

Vision: the paper's Table 2 (ModRWKV on RWKV7-3B with SigLIP2, and LLaVA-1.5-7B as the paper
quotes it). ASR: RWKV7-0.4B with each audio encoder. Time series: zero-shot MSE, 720 -> 96.
"""

from __future__ import annotations

from .base import PaperResult

MODRWKV_3B = "ModRWKV RWKV7-3B (paper)"
LLAVA_7B = "LLaVA-1.5-7B (paper)"

VISION = {
    # benchmark: (ModRWKV RWKV7-3B + SigLIP2, LLaVA-1.5-7B or None)
    "vqav2": (78.3, 78.5),
    "gqa": (60.8, 62.0),
    "scienceqa": (70.9, 66.8),
    "textvqa": (51.1, 58.2),
    "pope": (87.1, 86.5),
    "mmbench": (66.6, 64.3),
    "mmmu": (38.7, None),
}

# RWKV7-0.4B; LibriSpeech WER (test-clean, test-other), Aishell-1 CER (dev, test).
ASR_ENCODERS = ("WavLM-large", "WavLM-base+", "Whisper-medium", "Whisper-small")
LIBRISPEECH = {"test-clean": (2.43, 3.08, 5.33, 6.24), "test-other": (6.51, 10.38, 12.28, 16.92)}
AISHELL = {"dev": (9.68, 12.40, 5.08, 6.29), "test": (10.33, 13.46, 5.83, 6.95)}

# Zero-shot MSE, lookback 720, horizon 96: ModRWKV (100% GIFT-Eval) and TimesFM.
SERIES = {
    "ecl": (0.342, 0.119),
    "etth1": (0.648, 0.421),
    "etth2": (0.453, 0.326),
    "ettm1": (0.227, 0.363),
    "ettm2": (0.426, 0.206),
    "weather": (0.203, 0.123),
    "traffic": (0.342, 0.327),
}


def vision_paper(name: str) -> list[PaperResult]:
    """The paper's ModRWKV number for a vision benchmark, and LLaVA-1.5-7B's where the paper quotes one."""
    ours, llava = VISION[name]
    return [PaperResult(MODRWKV_3B, ours)] + ([PaperResult(LLAVA_7B, llava)] if llava is not None else [])
