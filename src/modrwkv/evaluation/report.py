"""`report.md`: our numbers beside the published ones (spec section 3), one row per benchmark run.

`format_report` takes one or more `summary.json` contents, so the reports of several runs can be
combined into one table (`format_report([json.load(open(p)) for p in paths])`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["baseline_comparison", "format_metric", "format_report", "interval_summary", "per_answer_table",
           "weakest_answer"]


def format_metric(value: Any) -> str:
    """A metric as every place shows it (report.md, `modrwkv eval`'s last line, the model card), so that
    they agree digit for digit; summary.json keeps the full value."""
    if not isinstance(value, (int, float)):
        return "–"
    if abs(value) >= 1:
        return f"{value:.2f}"
    # three significant digits below 0.1: a forecast's MSE of 0.00325 is not 0.003
    return f"{value:.3f}" if abs(value) >= 0.1 or value == 0 else f"{value:.3g}"


def baseline_comparison(summary: Mapping[str, Any]) -> str:
    """The model's headline number against the simple methods' on the same samples (`metrics.baselines`; an
    error, lower is better, as the forecasting tasks' MSE), for a run's last line and its report: "baselines
    on the same windows, MSE (standardised): repeat-last 0.412, look-back mean 0.530: the model's 0.301 is 27%
    lower than the best of them (repeat-last)"; "" for a run without."""
    baselines, metric = summary["metrics"].get("baselines") or {}, summary["headline"]["metric"]
    value = summary["headline"]["value"]
    if not baselines or not isinstance(value, (int, float)):
        return ""
    listed = ", ".join(f"{name} {format_metric(scores[metric])}" for name, scores in baselines.items())
    best_name, best = min(((name, scores[metric]) for name, scores in baselines.items()), key=lambda item: item[1])
    if format_metric(value) == format_metric(best):
        relation = "level with the best of them"
    elif best == 0:
        relation = "above the best of them, which is exact"
    else:
        change = abs(value - best) / best * 100
        relation = f"{change:.0f}% {'lower' if value < best else 'higher'} than the best of them"
    what = "windows" if "windows" in summary["metrics"] else "samples"  # a forecasting task's samples are windows
    return (f"baselines on the same {what}, {summary['headline']['label']}: {listed}: the model's "
            f"{format_metric(value)} is {relation} ({best_name})")


def interval_summary(summary: Mapping[str, Any]) -> str:
    """A forecasting run's quantile forecasts (`--quantiles`) beside repeat-last's, for its last line and its report:
    "quantiles 0.1, 0.5, 0.9: mean weighted quantile loss 0.0312 (repeat-last 0.0525); 80% interval coverage 0.79
    (repeat-last 0.84)"; "" for a run without."""
    metrics = summary["metrics"]
    if "quantiles" not in metrics:
        return ""
    naive = (metrics.get("baselines") or {}).get("repeat-last", {})
    beside = f" (repeat-last {format_metric(naive['wql'])})" if "wql" in naive else ""
    naive_covered = naive.get("interval_coverage", {})
    covered = "; ".join(
        f"{name} interval coverage {value:.3f}"
        + (f" (repeat-last {naive_covered[name]:.3f})" if name in naive_covered else "")
        for name, value in metrics["interval_coverage"].items())
    levels = ", ".join(f"{level:g}" for level in metrics["quantiles"]["levels"])
    return (f"quantiles {levels}: mean weighted quantile loss {format_metric(metrics['wql'])}{beside}"
            + (f"; {covered}" if covered else ""))


def _published(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def format_report(summaries: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown document: a table with a row per run and a column per published model, then
    each run's other metrics and notes. Runs with no published numbers (custom data sets, other
    settings) get a table of their own, never a row beside the paper's numbers."""
    if not summaries:
        raise ValueError("no summaries to report")
    published = [s for s in summaries if s["paper"]]
    own = [s for s in summaries if not s["paper"]]
    models: list[str] = []
    for summary in published:
        for result in summary["paper"]:
            if result["model"] not in models:
                models.append(result["model"])
    lines = ["# modrwkv eval", ""]
    for group, columns in ((published, models), (own, [])):
        if not group:
            continue
        if group is own and published:
            lines += ["Runs without published numbers to compare with:", ""]
        lines += [("| benchmark | split | samples | metric | this model | " + "".join(f"{m} | " for m in columns)).rstrip(),
                  "|---|---|---:|---|---:|" + "---:|" * len(columns)]
        for s in group:
            paper = {r["model"]: r["value"] for r in s["paper"]}
            ours = "server-scored: export with --submission" if s["server_scored"] else format_metric(s["headline"]["value"])
            samples = f"{s['samples']}" + (f" of {s['samples_in_split']}" if s["samples"] != s["samples_in_split"] else "")
            lines.append((f"| {s['title']} | {s['split']} | {samples} | {s['headline']['label']} | {ours} | "
                          + "".join(f"{_published(paper.get(m))} | " for m in columns)).rstrip())
        lines.append("")
    for s in summaries:
        lines.append(f"## {s['title']} ({s['split']})")
        lines.append("")
        data = ", ".join(f"`{d}`" for d in s["data"]) if isinstance(s["data"], list) else f"`{s['data']}`"
        lines.append(f"- model: `{s['model']}`; data: {data}; max_new_tokens {s['max_new_tokens']}, greedy")
        if s["samples"] != s["samples_in_split"]:
            lines.append(f"- only the first {s['samples']} of {s['samples_in_split']} samples (--limit): "
                         "not comparable with the published numbers")
        if s["paper_note"]:
            lines.append(f"- note: {s['paper_note']}")
        if comparison := baseline_comparison(s):
            maes = ", ".join(f"{name} {format_metric(scores['mae'])}"
                             for name, scores in s["metrics"]["baselines"].items() if "mae" in scores)
            lines.append(f"- {comparison}" + (f"; their MAE: {maes}" if maes else ""))
        if intervals := interval_summary(s):
            lines.append(f"- {intervals}")
        for key, value in s["metrics"].items():
            if key != s["headline"]["metric"] and not isinstance(value, Mapping):
                lines.append(f"- {key}: {format_metric(value) if isinstance(value, float) else value}")
        lines.append("")
        if s["metrics"].get("per_answer"):
            lines += per_answer_table(s["metrics"]["per_answer"], choice=s["metrics"].get("metric") == "choice")
    return "\n".join(lines)


def per_answer_table(per_answer: Mapping[str, Mapping[str, Any]], choice: bool = False) -> list[str]:
    """The breakdown of a classifier's labels (`metrics.label_breakdown`) as a Markdown table; `choice`: of a
    multiple-choice file's right options, against the option each reply selects."""
    if choice:
        lines = ["Per right answer (accuracy: of the samples whose right answer this option is, those answered "
                 "right; selected: the replies selecting it; precision: of those, the ones that were right; an option "
                 "that is no sample's right answer has a row when selected; a reply that selects no option is among "
                 "replies_outside_answers):", "",
                 "| right answer | samples | accuracy (%) | selected | precision (%) | most frequent wrong selection |"]
    else:
        lines = ["Per answer (accuracy: of the samples with this answer, those answered right; precision: of the "
                 "replies giving this answer, those that were right):", "",
                 "| answer | samples | accuracy (%) | replied | precision (%) | most frequent wrong reply |"]
    lines.append("|---|---:|---:|---:|---:|---|")
    for answer, counts in per_answer.items():
        confused = counts["confused_with"]
        wrong = "–" if confused is None else f"{_cell(confused or '(empty)')} ({counts['confused_count']})"
        precision = "–" if counts["precision"] is None else f"{counts['precision']:.1f}"
        recall = "–" if counts["recall"] is None else f"{counts['recall']:.1f}"
        lines.append(f"| {_cell(answer)} | {counts['samples']} | {recall} | {counts['replied']} "
                     f"| {precision} | {wrong} |")
    lines.append("")
    return lines


def _cell(text: str) -> str:
    """Text in a table cell: on one line, shortened, its pipes escaped."""
    return _short(text).replace("|", "\\|")


def _short(text: str, width: int = 40) -> str:
    """Text on one line, shortened to `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def weakest_answer(per_answer: Mapping[str, Mapping[str, Any]]) -> str:
    """The answer answered right least often, for a run's last line: "'8' 85.7% (30 of 35), wrongly '1' 3 times"
    (of the answers samples have: not an option that is no sample's right answer)."""
    answered = {answer: counts for answer, counts in per_answer.items() if counts["samples"]}
    answer, counts = min(answered.items(), key=lambda item: (item[1]["recall"], -item[1]["samples"]))
    wrong = (f", wrongly {_short(counts['confused_with'] or '(empty)')!r} {counts['confused_count']} "
             f"time{'s' if counts['confused_count'] != 1 else ''}") if counts["confused_with"] is not None else ""
    return f"{_short(answer)!r} {counts['recall']:.1f}% ({counts['correct']} of {counts['samples']}){wrong}"
