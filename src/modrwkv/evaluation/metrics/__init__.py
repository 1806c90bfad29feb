"""Benchmark metrics that reproduce the official scoring scripts on the same predictions.

vqa: VQAv2 (official `vqaEval.py`) and TextVQA (LLaVA / MMF EvalAI processor) accuracy.
exact: GQA exact match (LLaVA conversion + GQA `eval.py`).
choice: option letters (ScienceQA / MMBench), MMBench CircularEval, MMMU parsing and scoring.
pope: POPE yes/no parsing and accuracy / precision / recall / F1 / yes-ratio.
speech: LibriSpeech WER (Whisper English normaliser) and Aishell-1 CER, via jiwer.
series: long-horizon forecasting borders, train-only standardisation, windows, MSE / MAE.
caption: COCO caption evaluation (pycocoevalcap) CIDEr-D and BLEU-1..4 on PTB-tokenized captions.

Every aggregate score is in percent (0-100) except MSE / MAE and the caption scores (`cider_d`, `bleu`: on
pycocoevalcap's scale, 0-10 and 0-1; `caption_scores`: times 100, as captioning papers report them); see each
module for its sources.
"""

from .caption import bleu, caption_scores, cider_d, ptb_tokenize
from .choice import (
    circular_eval,
    eval_mmmu_open,
    extract_choice,
    mmmu_accuracy,
    option_letters,
    parse_mmmu_multi_choice,
    parse_mmmu_open,
    scienceqa_choice,
    vanilla_accuracy,
)
from .exact import gqa_accuracy, gqa_score, label_breakdown, normalize_short_answer
from .pope import parse_yes_no, pope_metrics, pope_split_metrics
from .series import (
    StandardStats,
    apply_standard,
    fit_standard,
    forecast_baselines,
    forecast_windows,
    last_horizon_split,
    long_horizon_split,
    mae,
    mase,
    mase_scale,
    mase_scales,
    mse,
    quantile_scores,
    smape,
)
from .speech import cer, normalize_chinese, normalize_english, wer
from .vqa import (
    normalize_textvqa_answer,
    normalize_vqa_answer,
    textvqa_accuracy,
    vqa_accuracy,
    vqa_score,
)

__all__ = [
    "StandardStats",
    "apply_standard",
    "bleu",
    "caption_scores",
    "cer",
    "cider_d",
    "circular_eval",
    "eval_mmmu_open",
    "extract_choice",
    "fit_standard",
    "forecast_baselines",
    "forecast_windows",
    "gqa_accuracy",
    "gqa_score",
    "last_horizon_split",
    "long_horizon_split",
    "mae",
    "mase",
    "mase_scale",
    "mase_scales",
    "mmmu_accuracy",
    "mse",
    "normalize_chinese",
    "normalize_english",
    "label_breakdown",
    "normalize_short_answer",
    "normalize_textvqa_answer",
    "normalize_vqa_answer",
    "option_letters",
    "parse_mmmu_multi_choice",
    "parse_mmmu_open",
    "parse_yes_no",
    "pope_metrics",
    "pope_split_metrics",
    "ptb_tokenize",
    "quantile_scores",
    "scienceqa_choice",
    "smape",
    "textvqa_accuracy",
    "vanilla_accuracy",
    "vqa_accuracy",
    "vqa_score",
    "wer",
]
