"""Benchmark metrics against hand-computed values and the official scripts' documented quirks."""

from __future__ import annotations

import json
from importlib import resources

import jiwer
import numpy as np
import pytest
from eval_fixtures import coco_caption_module

from modrwkv.data.readers.series import forecast_baseline, instance_stats
from modrwkv.evaluation.metrics import (
    apply_standard,
    bleu,
    caption_scores,
    cer,
    cider_d,
    circular_eval,
    eval_mmmu_open,
    extract_choice,
    fit_standard,
    forecast_baselines,
    forecast_windows,
    gqa_accuracy,
    gqa_score,
    label_breakdown,
    long_horizon_split,
    mae,
    mmmu_accuracy,
    mse,
    normalize_chinese,
    normalize_english,
    normalize_textvqa_answer,
    normalize_vqa_answer,
    parse_mmmu_multi_choice,
    parse_mmmu_open,
    parse_yes_no,
    pope_metrics,
    pope_split_metrics,
    ptb_tokenize,
    scienceqa_choice,
    textvqa_accuracy,
    vanilla_accuracy,
    vqa_accuracy,
    vqa_score,
    wer,
)

# ------------------------------------------------------------------------------------------ VQA


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("two", "2"),
        ("Two", "2"),
        ("none", "0"),
        ("a dog", "dog"),
        ("The Dog", "dog"),
        ("yes.", "yes"),
        ("Yes", "yes"),
        ("dont", "don't"),
        ("don't", "don't"),
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("5.", "5"),
        ("e.g.", "eg"),
        ("t-shirt", "t shirt"),
        ("hi - there", "hi there"),  # a mark touching a space is deleted
        ("red,blue", "red blue"),  # otherwise it becomes a space
        ("1,000 t-shirt", "1000 tshirt"),  # a digit,digit anywhere deletes every mark
        ("  yes\n", "yes"),
        ("what's\tup?", "what's up"),
    ],
)
def test_normalize_vqa_answer_official_cases(raw, expected):
    assert normalize_vqa_answer(raw) == expected


def test_normalize_vqa_answer_removes_at_most_32_periods():
    # The official script passes re.UNICODE (= 32) as `count` to re.sub.
    assert normalize_vqa_answer("x" + "." * 40) == "x" + "." * 8


@pytest.mark.parametrize(
    ("matches", "expected"),
    [
        # 10 answers, k equal to the prediction. Leaving out one of the k matching answers leaves
        # k-1 matches, leaving out one of the 10-k others leaves k:
        #   acc = [k * min(1, (k-1)/3) + (10-k) * min(1, k/3)] / 10
        (0, 0.0),  # [0 + 10*0] / 10
        (1, 0.3),  # [1*0 + 9*(1/3)] / 10 = 3/10
        (2, 0.6),  # [2*(1/3) + 8*(2/3)] / 10 = (2/3 + 16/3) / 10 = 6/10
        (3, 0.9),  # [3*(2/3) + 7*1] / 10 = 9/10
        (4, 1.0),  # [4*1 + 6*1] / 10
        (10, 1.0),
    ],
)
def test_vqa_accuracy_leave_one_out(matches, expected):
    answers = ["dog"] * matches + ["cat", "cow", "pig"] * 4
    answers = answers[:10]
    assert vqa_accuracy("dog", answers) == pytest.approx(expected)


def test_vqa_accuracy_normalises_the_prediction():
    answers = ["2"] * 3 + ["3"] * 7
    assert vqa_accuracy("Two.", answers) == pytest.approx(0.9)
    assert vqa_accuracy("a dog", ["dog"] * 4 + ["cat"] * 6) == pytest.approx(1.0)


def test_vqa_accuracy_reproduces_identical_answer_quirk():
    # Ten identical human answers are compared unprocessed: "t-shirt" never matches the
    # normalised prediction "t shirt" ...
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 10) == 0.0
    # ... while one different answer makes the script process them all.
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 9 + ["shirt"]) == pytest.approx(1.0)
    # Human answers are never lower-cased by the official script.
    assert vqa_accuracy("Yes", ["Yes"] * 6 + ["no"] * 4) == 0.0


def test_vqa_accuracy_any_number_of_answers():
    assert vqa_accuracy("dog", ["dog", "dog", "dog", "cat"]) == pytest.approx(
        (3 * (2 / 3) + 1 * 1) / 4
    )
    assert vqa_accuracy("dog", ["dog"]) == 0.0  # leave-one-out leaves nothing to match
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("dog", [])
    with pytest.raises(TypeError, match="not one string"):
        vqa_accuracy("dog", "dog")


def test_vqa_score_is_mean_percent():
    predictions = ["dog", "cat"]
    answer_lists = [["dog"] * 10, ["cat"] + ["dog"] * 9]
    assert vqa_score(predictions, answer_lists) == pytest.approx((1.0 + 0.3) / 2 * 100)
    with pytest.raises(ValueError, match="pair up"):
        vqa_score(predictions, answer_lists[:1])
    with pytest.raises(ValueError, match="unknown VQA scoring style"):
        vqa_score(predictions, answer_lists, style="gqa")


def test_textvqa_processor_differs_from_vqa():
    assert normalize_textvqa_answer("Coca-Cola's") == "coca cola 's"
    assert normalize_vqa_answer("Coca-Cola's") == "coca cola's"
    assert normalize_textvqa_answer("1,5") == "15"  # commas are deleted before anything else
    # TextVQA processes identical human answers too, so the t-shirt quirk does not apply.
    assert textvqa_accuracy("t-shirt", ["t-shirt"] * 10) == pytest.approx(1.0)
    assert textvqa_accuracy("STOP", ["stop"] * 2 + ["go"] * 8) == pytest.approx(0.6)
    assert vqa_score(["t-shirt"], [["t-shirt"] * 10], style="textvqa") == pytest.approx(100.0)


# ------------------------------------------------------------------------------------------ GQA


def test_gqa_exact_match():
    assert gqa_accuracy("Yes.", "yes")
    assert gqa_accuracy(" table.\n", "table")
    assert gqa_accuracy("Red", "red")
    assert not gqa_accuracy("two", "2")
    assert not gqa_accuracy("the table", "table")  # no article removal in GQA
    assert not gqa_accuracy("yes", "Yes")  # gold is compared as written
    assert gqa_score(["Yes.", "no", "cat"], ["yes", "no", "dog"]) == pytest.approx(200 / 3)


# ------------------------------------------------------------------------------ ScienceQA/MMBench


@pytest.mark.parametrize(
    ("text", "n_choices", "expected"),
    [
        ("B", 3, "B"),
        (" C ", 3, "C"),
        ("B. cat", 3, "B"),
        ("B\nBecause cats purr.", 3, "B"),  # newline -> ". "
        ("The answer is C.", 3, "C"),
        ("So, The answer is A because", 2, "A"),
        ("E", 4, None),  # a letter beyond the options fails
        ("B.", 3, None),  # LLaVA's script is strict
        ("(B)", 3, None),
        ("the answer is B", 3, None),  # case-sensitive
        ("AB", 3, None),
    ],
)
def test_scienceqa_choice_matches_llava_rules(text, n_choices, expected):
    assert scienceqa_choice(text, n_choices) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("The answer is B.", "B"),
        ("B. cat", "B"),
        ("Answer: C", "C"),
        ("dog", "B"),  # option text, no letter
        ("It is a fish", "C"),  # the article "A" is lower case here, the text matches "fish"
        ("A or B", None),  # two letters
        ("a cat or a dog", None),  # two option texts
        ("I cannot tell", None),
        ("Cannot determine the answer", None),  # VLMEvalKit refusal
    ],
)
def test_extract_choice_variants(text, expected):
    assert extract_choice(text, ["cat", "dog", "fish"]) == expected


def _records(group, answers, predictions, category):
    return [
        {"index": group + k * 1_000_000, "answer": a, "prediction": p, "category": category}
        for k, (a, p) in enumerate(zip(answers, predictions))
    ]


def test_circular_eval_needs_every_rotation_right():
    records = (
        _records(1, "ABCD", "ABCD", "ocr")  # all four rotations right
        + _records(2, "BCDA", "BCDB", "ocr")  # last rotation wrong -> question wrong
        + _records(3, "CA", "CA", "count")  # two options, two rotations, both right
        + _records(4, "AB", [None, "B"], "count")  # unparsed prediction -> wrong
    )
    result = circular_eval(records)
    assert result["accuracy"] == pytest.approx(50.0)
    assert (result["correct"], result["total"], result["skipped"]) == (2, 4, 0)
    assert result["per_category"] == {"count": 50.0, "ocr": 50.0}
    vanilla = vanilla_accuracy(records)  # 4 + 3 + 2 + 1 right of 12 records
    assert vanilla["accuracy"] == pytest.approx(100 * 10 / 12)
    assert vanilla["per_category"]["ocr"] == pytest.approx(100 * 7 / 8)


def test_circular_eval_skips_groups_without_main_record():
    records = _records(1, "AB", "AB", "x") + [
        {"index": 1_000_005, "answer": "A", "prediction": "A"}
    ]
    result = circular_eval(records)
    assert (result["total"], result["skipped"], result["accuracy"]) == (1, 1, 100.0)
    with pytest.raises(TypeError, match="integer 'index'"):
        circular_eval([{"index": "1", "answer": "A", "prediction": "A"}])


# ------------------------------------------------------------------------------------------ MMMU

CHOICES = ["A", "B", "C", "D"]
INDEX2ANS = {"A": "apple", "B": "banana", "C": "cherry pie", "D": "12"}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("(B)", "B"),
        ("B.", "B"),
        ("I think the answer is C", "C"),
        ("Not (A); the answer is (C).", "C"),  # several bracketed letters: the last one wins
        ("The fruit in the picture is clearly a banana", "B"),  # > 5 words: option text
        ("banana", "D"),  # <= 5 words, no letter: random fallback, seed 0 -> "D" (see below)
    ],
)
def test_parse_mmmu_multi_choice(response, expected):
    assert parse_mmmu_multi_choice(response, CHOICES, INDEX2ANS, seed=0) == expected


def test_parse_mmmu_multi_choice_fallback_is_seeded():
    import random

    assert random.Random(0).choice(CHOICES) == "D"  # the value the case above relies on
    draws = {
        parse_mmmu_multi_choice("no idea", CHOICES, INDEX2ANS, seed=f"q{i}") for i in range(40)
    }
    assert draws == set(CHOICES)  # really random across questions ...
    again = {parse_mmmu_multi_choice("no idea", CHOICES, INDEX2ANS, seed="q7") for _ in range(5)}
    assert len(again) == 1  # ... but fixed per question


def test_parse_mmmu_open_numbers_and_units():
    parsed = parse_mmmu_open("The total is 1,000 meters.")
    assert "1,000 meters" in parsed and 1000.0 in parsed
    assert 0.0 in parsed  # official quirk: the simple-number pattern also reads the "000"
    assert eval_mmmu_open("1000", parsed)
    assert eval_mmmu_open("1,000", parsed)
    assert eval_mmmu_open("meters", parsed)  # string answers match as substrings
    assert not eval_mmmu_open("100", parsed)
    speed = parse_mmmu_open("First we integrate.\nSo the speed is 3.5 m/s")
    assert 3.5 in speed
    assert eval_mmmu_open("3.50", speed)  # numbers compare rounded to 2 decimals
    assert eval_mmmu_open(["7", "3.5"], speed)
    # official quirk: besides 2.5e3 the simple-number pattern also reads "2" and the "3"
    assert parse_mmmu_open("x = 2.5e3") == [2500.0, 2.0, 3.0]
    assert not eval_mmmu_open("x", parse_mmmu_open("the max"))  # single letters need a space


def test_mmmu_accuracy_records():
    records = [
        {"id": "v_Art_1", "subject": "Art", "question_type": "multiple-choice", "answer": "B",
         "response": "(B) banana", "options": "['apple', 'banana', 'cherry']"},
        {"id": "v_Art_2", "subject": "Art", "question_type": "multiple-choice", "answer": "A",
         "response": "(C)", "options": ["apple", "banana", "cherry"]},
        {"id": "v_Math_1", "subject": "Math", "question_type": "open", "answer": "42",
         "response": "Therefore the result is 42."},
        {"id": "v_Math_2", "subject": "Math", "question_type": "open", "answer": "7",
         "parsed_pred": [7.0]},
    ]  # fmt: skip
    result = mmmu_accuracy(records)
    assert result["accuracy"] == pytest.approx(75.0)
    assert result["per_subject"] == {"Art": 50.0, "Math": 100.0}
    with pytest.raises(ValueError, match="question_type"):
        mmmu_accuracy([{"id": 1, "question_type": "essay", "answer": "x", "response": "x"}])


# ------------------------------------------------------------------------------------------ POPE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes, there is a dog in the image.", "yes"),
        ("No, there is no dog.", "no"),
        ("There is not a cat in the image", "no"),
        ("Yes. No dog is visible.", "yes"),  # only the first sentence counts
        ("no", "no"),
        ("Nope", "yes"),
        ("NO", "yes"),  # official quirk: only "No", "no", "not" are negations
    ],
)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) == expected


def test_pope_metrics_on_a_confusion_matrix():
    # TP=3, FP=1, TN=4, FN=2
    labels = ["yes"] * 3 + ["no"] + ["no"] * 4 + ["yes"] * 2
    predictions = ["Yes."] * 3 + ["yes"] + ["No."] * 4 + ["There is no such object."] * 2
    m = pope_metrics(predictions, labels)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 1, 4, 2)
    assert m["accuracy"] == pytest.approx(70.0)  # 7 / 10
    assert m["precision"] == pytest.approx(75.0)  # 3 / 4
    assert m["recall"] == pytest.approx(60.0)  # 3 / 5
    assert m["f1"] == pytest.approx(100 * 2 * 0.75 * 0.6 / 1.35)  # 66.67
    assert m["yes_ratio"] == pytest.approx(40.0)  # 4 / 10
    with pytest.raises(ValueError, match="'yes' or 'no'"):
        pope_metrics(["yes"], ["maybe"])


def test_pope_split_metrics_mean():
    predictions = ["yes", "no", "yes", "yes"]
    labels = ["yes", "no", "no", "yes"]
    splits = ["random", "random", "adversarial", "adversarial"]
    result = pope_split_metrics(predictions, labels, splits)
    assert result["random"]["accuracy"] == 100.0
    assert result["adversarial"]["accuracy"] == 50.0
    assert result["mean"]["accuracy"] == pytest.approx(75.0)
    assert result["mean"]["yes_ratio"] == pytest.approx((50.0 + 100.0) / 2)


# ---------------------------------------------------------------------------------------- speech


def test_whisper_spelling_map_is_packaged():
    data = resources.files("modrwkv.evaluation.metrics").joinpath("data")
    spelling = json.loads(data.joinpath("whisper_english_spelling.json").read_text("utf-8"))
    assert spelling["colour"] == "color" and len(spelling) > 1500
    assert "MIT License" in data.joinpath("WHISPER_LICENSE").read_text("utf-8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Smith", "mister smith"),
        ("The colour of the theatre", "the color of the theater"),
        ("twenty five apples", "25 apples"),
        ("one hundred and two", "102"),
        ("It costs $3.50!", "it costs $3.50"),
        ("Um, I won't go [noise]", "i will not go"),
    ],
)
def test_normalize_english_like_whisper(text, expected):
    assert normalize_english(text) == expected


def test_wer_is_corpus_level_after_whisper_normalisation():
    references = ["Mr. Smith likes the colour red.", "I have twenty five apples"]
    hypotheses = ["mister smith likes the color red", "i have 25 apple"]
    # normalised: 6 + 4 reference words, one substitution (apples -> apple)
    assert wer(references, hypotheses) == pytest.approx(10.0)
    assert jiwer.wer(["i have 25 apples"], ["i have 25 apple"]) == pytest.approx(0.25)  # per utt.
    # corpus level, not the mean of utterance rates: (0 + 1) / (2 + 1) words, not (0 + 1) / 2
    assert wer(["hello world", "yes"], ["hello world", "no"]) == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])


def test_cer_chinese_ignores_spaces_and_punctuation():
    assert normalize_chinese("我 爱 北京，天安门。Ab") == "我爱北京天安门AB"
    assert cer(["我爱北京天安门"], ["我爱北京，天安门。"]) == 0.0
    assert cer(["我 爱 北京 天安门"], ["我爱南京天安门！"]) == pytest.approx(100 / 7)
    # corpus level: 1 substitution + 1 deletion over 7 + 3 reference characters
    assert cer(["我爱北京天安门", "你好吗"], ["我爱南京天安门", "你好"]) == pytest.approx(20.0)
    assert cer(["abc"], ["ABC"]) == 0.0


# ---------------------------------------------------------------------------------- time series


def test_mse_mae_over_all_elements():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    target = np.ones((2, 2))
    assert mse(pred, target) == pytest.approx((0 + 1 + 4 + 9) / 4)
    assert mae(pred, target) == pytest.approx((0 + 1 + 2 + 3) / 4)
    with pytest.raises(ValueError, match="shape"):
        mse(pred, target[:1])


def test_standardisation_fitted_on_train_only():
    train = np.array([[1.0, 10.0], [3.0, 10.0]])
    stats = fit_standard(train)
    np.testing.assert_allclose(stats.mean, [2.0, 10.0])
    np.testing.assert_allclose(stats.std, [1.0, 1.0])  # population std; zero std -> 1
    test = np.array([[5.0, 12.0]])
    np.testing.assert_allclose(apply_standard(test, *stats), [[3.0, 2.0]])


def test_long_horizon_borders():
    assert long_horizon_split("ETTh1", 17420, 720) == {
        "train": (0, 8640),  # 12 * 30 * 24
        "val": (7920, 11520),  # 8640 - 720, 8640 + 4 * 30 * 24
        "test": (10800, 14400),  # 11520 - 720, 11520 + 2880
    }
    assert long_horizon_split("ettm1", 69680, 720) == {
        "train": (0, 34560),
        "val": (33840, 46080),
        "test": (45360, 57600),
    }
    # custom: n_train = int(0.7 * 1000) = 700, n_test = 200, n_val = 100
    assert long_horizon_split("Weather", 1000, 96) == {
        "train": (0, 700),
        "val": (604, 800),
        "test": (704, 1000),
    }
    start, end = long_horizon_split("ETTh2", 17420, 720)["test"]
    assert (end - start) - 720 - 96 + 1 == 2785  # the well-known ETTh test-window count
    with pytest.raises(ValueError, match="unknown long-horizon"):
        long_horizon_split("M4", 1000, 96)
    with pytest.raises(ValueError, match="at least 14400 rows"):
        long_horizon_split("ETTh1", 10000, 96)


def test_forecast_windows_stride_one():
    data = np.arange(20, dtype=float).reshape(10, 2)
    inputs, targets = forecast_windows(data, 0, 10, lookback=3, horizon=2)
    assert inputs.shape == (6, 3, 2) and targets.shape == (6, 2, 2)
    np.testing.assert_array_equal(inputs[0, :, 0], [0, 2, 4])
    np.testing.assert_array_equal(targets[0, :, 0], [6, 8])
    np.testing.assert_array_equal(inputs[5, :, 1], [11, 13, 15])
    np.testing.assert_array_equal(targets[5, :, 1], [17, 19])
    with pytest.raises(ValueError, match="no window"):
        forecast_windows(data, 0, 4, lookback=3, horizon=2)


def test_forecast_baselines_by_hand():
    window = np.array([[1.0, 2.0, 3.0, 5.0, 6.0, 7.0]])  # period 3: +4 per period
    got = forecast_baselines(window, horizon=5, period=3)
    assert got["repeat-last"].tolist() == [[7.0] * 5]
    assert got["seasonal naive"].tolist() == [[5.0, 6.0, 7.0, 5.0, 6.0]]
    assert got["train mean"].tolist() == [[0.0] * 5]
    assert got["seasonal naive + drift"].tolist() == [[9.0, 10.0, 11.0, 13.0, 14.0]]  # a line continued exactly
    whole = forecast_baselines(window, horizon=2, period=6)  # one period: the same steps one period ago, no drift
    assert whole["seasonal naive"].tolist() == [[1.0, 2.0]] and "seasonal naive + drift" not in whole
    with pytest.raises(ValueError, match="period"):
        forecast_baselines(window, 2, period=7)


def test_forecast_baselines_read_a_gap_as_the_look_back_mean_by_hand():
    """A gap (NaN) in a look-back is the window's mean, as the model reads it: a look-back ending in a gap
    repeats its mean, and no baseline is NaN."""
    windows = np.array([[1.0, np.nan, 3.0, 5.0, 6.0, 7.0],    # mean 22 / 5 = 4.4 fills the gap
                        [2.0, 4.0, 6.0, 8.0, 10.0, np.nan]])  # mean 6: also its repeat-last
    got = forecast_baselines(windows, horizon=4, period=3)
    assert got["repeat-last"].tolist() == [[7.0] * 4, [6.0] * 4]
    np.testing.assert_allclose(got["look-back mean"], [[4.4] * 4, [6.0] * 4])
    assert got["seasonal naive"].tolist() == [[5.0, 6.0, 7.0, 5.0], [8.0, 10.0, 6.0, 8.0]]
    # drift: mean change over one period, (4 + (6 - 4.4) + 4) / 3 = 3.2 and (6 + 6 + 0) / 3 = 4
    np.testing.assert_allclose(got["seasonal naive + drift"], [[8.2, 9.2, 10.2, 11.4], [12.0, 14.0, 10.0, 16.0]])
    # the seasonal naive forecast the model itself adds: on the window normalised by its own statistics, gaps 0
    for window, naive in zip(windows, got["seasonal naive"], strict=True):
        mean, scale = instance_stats(window)
        normalised = np.nan_to_num((window - mean) / scale)
        np.testing.assert_allclose(forecast_baseline(normalised, 4, 3) * scale + mean, naive)
    assert set(forecast_baselines(windows, 4)) == {"repeat-last", "look-back mean", "train mean"}  # no period
    with pytest.raises(ValueError, match="no observed value"):
        forecast_baselines(np.array([[np.nan, np.nan]]), 2)


def test_label_breakdown_counts_by_hand():
    """A classifier's report per label (scikit-learn's classification_report: recall, precision, support),
    compared as exact match compares ("Cat." is cat), with each label's most frequent wrong reply, shown as
    the label is written ("Dog") when it is one, else as first replied."""
    answers = ["cat", "cat", "cat", "Dog", "dog", "dog", "bird", "bird"]
    replies = ["Cat.", "dog", "cat", "dog", "dog ", "Mouse.", "dog", "a bird"]
    breakdown = label_breakdown(answers, replies)
    # in the order Python sorts the labels as first written (capitals first)
    assert list(breakdown["per_answer"]) == ["Dog", "bird", "cat"]
    assert breakdown == {
        "per_answer": {
            "Dog": {"samples": 3, "correct": 2, "recall": 100 * 2 / 3, "replied": 4, "precision": 50.0,
                    "confused_with": "Mouse.", "confused_count": 1},
            "bird": {"samples": 2, "correct": 0, "recall": 0.0, "replied": 0, "precision": None,
                     "confused_with": "Dog", "confused_count": 1},
            "cat": {"samples": 3, "correct": 2, "recall": 100 * 2 / 3, "replied": 2, "precision": 100.0,
                    "confused_with": "Dog", "confused_count": 1}},
        "replies_outside_answers": 2}  # "Mouse.", "a bird"
    # answers that are not a classifier's labels: mostly different (free-form QA), or too many labels
    assert label_breakdown(["red", "a cat", "two", "red"], ["red"] * 4) is None
    many = [str(i) for i in range(101)] * 3
    assert label_breakdown(many, many) is None
    assert label_breakdown([str(i) for i in range(100)] * 2, ["0"] * 200) is not None
    with pytest.raises(ValueError, match="3 predictions but 2 answers"):
        label_breakdown(["a", "b"], ["a", "b", "c"])


def test_label_breakdown_of_replies_that_give_no_answer():
    """A None prediction (a multiple-choice reply that selects no option) is wrong, outside the answers, and
    no reply a label is confused with: counted by hand."""
    breakdown = label_breakdown(["A", "A", "A", "B", "B", "B"], ["A", None, "A", "A", None, None])
    assert breakdown == {
        "per_answer": {
            "A": {"samples": 3, "correct": 2, "recall": 100 * 2 / 3, "replied": 3, "precision": 100 * 2 / 3,
                  "confused_with": None, "confused_count": 0},
            "B": {"samples": 3, "correct": 0, "recall": 0.0, "replied": 0, "precision": None,
                  "confused_with": "A", "confused_count": 1}},
        "replies_outside_answers": 3}



def test_label_breakdown_gives_a_selected_option_that_is_no_answer_its_row():
    """An option no record has as its answer (C here), when replies select it, is a row of 0 samples (recall
    None) with its replies, and the confusion it is; not a reply outside the answers. An option nobody
    selected (D) has none. The last line names an answer samples have. Counted by hand."""
    from modrwkv.evaluation.report import per_answer_table, weakest_answer

    breakdown = label_breakdown(["A", "A", "B", "B"], ["C", "A", "C", None], options=["A", "B", "C", "D"])
    assert breakdown == {
        "per_answer": {
            "A": {"samples": 2, "correct": 1, "recall": 50.0, "replied": 1, "precision": 100.0,
                  "confused_with": "C", "confused_count": 1},
            "B": {"samples": 2, "correct": 0, "recall": 0.0, "replied": 0, "precision": None,
                  "confused_with": "C", "confused_count": 1},
            "C": {"samples": 0, "correct": 0, "recall": None, "replied": 2, "precision": 0.0,
                  "confused_with": None, "confused_count": 0}},
        "replies_outside_answers": 1}
    assert weakest_answer(breakdown["per_answer"]) == "'B' 0.0% (0 of 2), wrongly 'C' 1 time"
    assert "| C | 0 | – | 2 | 0.0 | – |" in per_answer_table(breakdown["per_answer"], choice=True)
    # the limits count the answers records have: 4 records of 2 answers, whatever the options
    assert label_breakdown(["A", "B"] * 2, ["A"] * 4, options=[chr(65 + i) for i in range(26)]) is not None

def test_label_breakdown_orders_numbers_as_numbers_and_the_last_line_shows_labels_as_written():
    from modrwkv.evaluation.report import format_report, weakest_answer

    labels = ["10", "2", "1", "10", "2", "1"]
    breakdown = label_breakdown(labels, ["10", "2", "1", "1", "2", "1"])
    assert list(breakdown["per_answer"]) == ["1", "2", "10"]  # (as text: 1, 10, 2)
    assert weakest_answer(breakdown["per_answer"]) == "'10' 50.0% (1 of 2), wrongly '1' 1 time"
    piped = label_breakdown(["a|b", "a|b", "c", "c"], ["c|d", "c|d", "c", "c"])
    assert weakest_answer(piped["per_answer"]) == "'a|b' 0.0% (0 of 2), wrongly 'c|d' 2 times"  # no table escapes
    summary = {"paper": [], "server_scored": False, "headline": {"value": 33.3, "label": "exact", "metric": "accuracy"},
               "samples": 4, "samples_in_split": 4, "title": "custom data", "split": "all", "model": "m", "data": "d",
               "max_new_tokens": 8, "paper_note": None, "metrics": {"accuracy": 33.3, **piped}}
    assert "| a\\|b | 2 | 0.0 | 0 | – | c\\|d (2) |" in format_report([summary])  # a table cell's pipes escaped


# --- captions: CIDEr-D and BLEU as pycocoevalcap 1.2 computes them, on PTB-tokenized text -----------------------

# Caption sets as pycocoevalcap scores them, already tokenized (lower case, no punctuation): (one candidate per
# image, each image's references)
CAPTION_SETS = {
    "several references, repeated words": (
        ["a man riding a horse on a beach", "two dogs playing with a red ball in the grass", "a plate of food",
         "a cat a cat a cat sitting on a cat bed"],
        [["a man rides a horse along the beach", "a person on a horse at the beach",
          "a rider and his horse on the sand near the ocean"],
         ["two dogs play with a ball on the grass", "a pair of dogs chasing a red ball", "dogs playing in a grassy "
          "field", "two brown dogs and a red ball", "two dogs playing with a red ball in the grass"],
         ["a plate topped with rice and vegetables and a fork next to it on a wooden table", "a white plate of food",
          "food on a plate"],
         ["a cat sitting on a bed", "a cat lying on a cat bed", "a grey cat on a blanket"]]),
    "an empty reply, short and long ones": (
        ["", "dog", "a very very long caption that goes on and on about a dog running in a park with many tall "
         "trees and people walking by on a sunny day", "a dog in the snow"],
        [["a dog on a couch", "a small dog sleeping"], ["a dog catching a frisbee", "a dog jumps"],
         ["a dog running in a park", "a brown dog runs past trees in a park", "dog in park"],
         ["a dog in the snow", "a dog plays in the snow", "a black dog in white snow"]]),
    "one image (every n-gram in every image's references: CIDEr 0)": (
        ["a dog is running"], [["a dog running", "a dog is running fast", "the dog runs"]]),
    "no n-gram in common; references as much longer as shorter": (
        ["zebra zebra", "red ball"], [["a cat", "the cat sat on a mat"], ["red", "the red balls"]]),
}


@pytest.mark.parametrize("name", CAPTION_SETS)
def test_cider_d_and_bleu_equal_pycocoevalcaps(name):
    cider_scorer = coco_caption_module("pycocoevalcap/cider/cider_scorer.py")
    bleu_scorer = coco_caption_module("pycocoevalcap/bleu/bleu_scorer.py")
    candidates, references = CAPTION_SETS[name]
    theirs_cider, theirs_bleu = cider_scorer.CiderScorer(n=4, sigma=6.0), bleu_scorer.BleuScorer(n=4)
    for candidate, image in zip(candidates, references):  # as pycocoevalcap's Cider and Bleu wrappers add them
        theirs_cider += (candidate, image)
        theirs_bleu += (candidate, image)
    mean, per_image = theirs_cider.compute_score()
    ours_mean, ours_per_image = cider_d(candidates, references)
    assert ours_mean == pytest.approx(mean, abs=1e-9) and ours_per_image == pytest.approx(list(per_image), abs=1e-9)
    assert bleu(candidates, references) == pytest.approx(theirs_bleu.compute_score(option="closest")[0], abs=1e-9)
    # a set that scores nothing would compare nothing: these score, except where they must not
    assert (mean > 0) == (name != "one image (every n-gram in every image's references: CIDEr 0)")


def test_caption_scores_tokenize_and_report_times_100():
    """Raw captions are tokenized before scoring (case and punctuation make no difference), CIDEr and BLEU are
    given times 100, and an image without references is refused."""
    candidates, references = CAPTION_SETS["several references, repeated words"]
    scores = caption_scores([f"{candidate.capitalize()}." for candidate in candidates],
                            [[f'"{reference.upper()}!"' for reference in image] for image in references])
    assert scores["cider"] == pytest.approx(100 * cider_d(candidates, references)[0], abs=1e-9)
    assert [scores[f"bleu_{n}"] for n in range(1, 5)] == pytest.approx(
        [100 * score for score in bleu(candidates, references)], abs=1e-9)
    with pytest.raises(ValueError, match="an image without references"):
        caption_scores(["a dog"], [[]])


# Captions and what Stanford CoreNLP 3.4.1's PTBTokenizer -preserveLines -lowerCase makes of them once
# pycocoevalcap has dropped its punctuation tokens (the brackets' tokens it lists in upper case, so it keeps them)
PTB_CAPTIONS = {
    "A man's dog doesn't like the \"red\" ball.": "a man 's dog does n't like the red ball",
    "Two dogs' toys (a ball & a stick) lie on the grass -- near a \"No Parking\" sign.":
        "two dogs toys -lrb- a ball & a stick -rrb- lie on the grass near a no parking sign",
    "The kids can't wait; they're gonna eat 1,000 cookies at 5:30 p.m.!":
        "the kids ca n't wait they 're gon na eat 1,000 cookies at 5:30 p.m.",
    "A woman's hand holds a cup of coffee... it's her 3rd cup?":
        "a woman 's hand holds a cup of coffee it 's her 3rd cup",
    "\"Look,\" she said, 'it's a well-known spot.'": "look she said it 's a well-known spot",
    "A black-and-white photo: 2 people, 1 dog.": "a black-and-white photo 2 people 1 dog",
    "It\u2019s a \u201cnice\u201d day \u2014 isn\u2019t it?": "it 's a nice day is n't it",
    "I'd say we'll see; you've got 10% off $5 items.": "i 'd say we 'll see you 've got 10 % off $ 5 items",
    "A sign reads \"STOP\" [in red] {and white}.": "a sign reads stop -lsb- in red -rsb- -lcb- and white -rcb-",
    "Mr. Smith walks to St. Mary's at 10 a.m. with fig. 3 and approx. 5 apples.":
        "mr. smith walks to st. mary 's at 10 a.m. with fig. 3 and approx 5 apples",
    "A T-shirt-wearing kid, half-asleep, sits - tired - on a bench.":
        "a t-shirt-wearing kid half-asleep sits tired on a bench",
    "Don't, won't, cannot: the dogs' '90s toys.": "do n't wo n't can not the dogs '90s toys",
    "A poster from the '90s.": "a poster from the '90s",
}


def test_ptb_tokenize_splits_as_corenlps_ptbtokenizer_did():
    assert {caption: ptb_tokenize(caption) for caption in PTB_CAPTIONS} == PTB_CAPTIONS


def test_ptb_tokenize_equals_pycocoevalcaps_ptbtokenizer(tmp_path):
    """The same captions through pycocoevalcap's own tokenizer, the CoreNLP jar of its wheel (needs Java)."""
    import shutil

    if shutil.which("java") is None:
        pytest.skip("no java on PATH: pycocoevalcap's PTBTokenizer runs Stanford CoreNLP's jar (apt-get install "
                    "default-jre-headless)")
    tokenizer = coco_caption_module("pycocoevalcap/tokenizer/ptbtokenizer.py", tmp_path).PTBTokenizer()
    captions = list(PTB_CAPTIONS)
    tokenized = tokenizer.tokenize({"image": [{"caption": caption} for caption in captions]})["image"]
    assert tokenized == [ptb_tokenize(caption) for caption in captions]
