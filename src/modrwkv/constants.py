"""Names and defaults that the command line offers in its options, defined here once.

This module imports nothing, so that `modrwkv --help` and the parsing of every command need not load
torch or the packages that use these values (which import them from here).
"""

# The LM precisions a user names on the command line, in a harness's model arguments or as
# `dtype="..."` in Python (see `modrwkv.lm.resolve_dtype`).
DTYPES = ("fp32", "bf16", "fp16", "int8")

#: Precisions of the large matrices of a GGUF export; vectors and the tensors llama.cpp keeps in fp32
#: stay fp32. q8_0 is llama.cpp's 8-bit block format (blocks of 32 with an fp16 scale), as the
#: converter's `--outtype q8_0`; a matrix whose rows are not a multiple of 32 long is written as f16.
GGUF_DTYPES = ("f32", "f16", "bf16", "q8_0")

# Pillow's own default for PIL.Image.MAX_IMAGE_PIXELS (about 9459 x 9459), the library's and CLI's default.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

# `modrwkv init`'s answers (modrwkv.training.init).
INIT_SIZES = ("tiny", "0.1b", "0.4b", "1.5b", "2.9b")
INIT_DEVICES = ("cpu", "gpu")
INIT_FORMATS = ("qa", "llava", "openai", "sharegpt", "asr", "series")

# How a series' rows are held out (data.options.holdout, init / eval --holdout): "ratio" 70/10/20 of each series, every
# window of its last 20% a test window; "last" its last horizon the one test window (the Monash archive's protocol)
SERIES_HOLDOUTS = ("ratio", "last")

# How `--task custom` scores (modrwkv.evaluation.tasks.custom).
EVAL_METRICS = ("exact", "vqa", "choice", "wer", "cer", "mse", "cider")

# The benchmarks `modrwkv eval --task` runs: the names of `modrwkv.evaluation.tasks.TASKS`, in its order
# (a test checks that the two agree).
EVAL_TASKS = ("vqav2", "gqa", "textvqa", "scienceqa", "pope", "mmbench", "mmmu", "librispeech", "aishell",
              "etth1", "etth2", "ettm1", "ettm2", "ecl", "weather", "traffic", "custom-series", "custom")

#: The longest segment of long-form transcription (`modrwkv eval --long-form`, `SegmentSettings`):
#: Whisper-style encoders read 30 s at a time.
DEFAULT_MAX_SEGMENT_SECONDS = 30.0
#: Each transcribed clip's or segment's reply budget (a 30 s segment of speech is ~100 words, ~150 tokens).
DEFAULT_TRANSCRIPT_TOKENS = 256
#: What a transcript can be written as (`modrwkv transcribe --format`, the server's /v1/audio/transcriptions):
#: OpenAI's audio-transcription response formats.
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
#: Look-back windows decoded together by `modrwkv forecast` (`modrwkv.inference.series_file.forecast_series`).
DEFAULT_FORECAST_BATCH = 16
