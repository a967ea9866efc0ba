"""BEIR-style evaluation: load a dataset, score a run with `pytrec_eval`, print a table, draw a plot.

Conventions (pinned by tests/unit/test_evaluation.py):

- **Mean over all judged queries.** Every query id in the qrels counts, like ``trec_eval -c``: a
  judged query the run has no results for scores 0 instead of silently dropping out of the mean
  (BEIR divides by the queries it got results for, which is the same number when every query returns
  something). Run queries without judgments are ignored.
- **Self-hits are removed.** A document whose id equals the query id is dropped from that query's
  results before scoring, as BEIR's ``ignore_identical_ids`` and Pyserini do (it matters on corpora
  such as ArguAna/Quora where queries are also documents).
- **Ties** are ordered by ``trec_eval``'s rule (score descending, then document id descending), not
  by the order of the run; give distinct scores if the order of ties matters.
- Metric names are ``trec_eval`` names with the cut-off after an underscore (``"ndcg_cut_10"``,
  ``"recall_100"``, ``"P_10"``, ``"map_cut_10"``) or their display form (``"ndcg@10"``); results are
  keyed by the display form: ``"ndcg@10"``, ``"recall@100"``, ``"precision@10"``, ``"map@10"``.

Usage::

    data = load_beir("../shared/datasets/scifact")
    run = results_to_run({qid: retriever.retrieve(text, top_k=100) for qid, text in data.queries.items()})
    scores = {"bm25": evaluate_run(run, data.qrels)}
    print(format_table(scores))
    plot_scores(scores, "scifact.png")
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import ConfigurationError, DatasetError, MissingDependencyError
from lens_rag.ingest import _parse_line, load_source

__all__ = [
    "DEFAULT_METRICS",
    "BeirDataset",
    "evaluate_run",
    "format_table",
    "load_beir",
    "plot_scores",
    "results_to_run",
]

logger = logging.getLogger(__name__)

DEFAULT_METRICS: tuple[str, ...] = ("ndcg_cut_10", "recall_100")

# trec_eval measure family -> display name, for measures with a cut-off (`family.k`)
_CUT_MEASURES = {"ndcg_cut": "ndcg", "recall": "recall", "P": "precision", "map_cut": "map", "success": "success"}
_DISPLAY_TO_FAMILY = {display: family for family, display in _CUT_MEASURES.items()}


@dataclass
class BeirDataset:
    """A BEIR dataset split held in memory.

    :param corpus: the corpus as documents (content ``title + "\\n" + text``, see :mod:`lens_rag.ingest`).
    :param queries: query id -> query text, only the queries that have judgments in this split.
    :param qrels: query id -> {document id -> graded relevance}.
    """

    corpus: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if line_no == 1 and fields[0].lower() in {"query-id", "query_id", "qid", "query"}:
                continue  # header: query-id corpus-id score
            if len(fields) == 4:  # TREC layout: qid iter docid rel
                fields = [fields[0], fields[2], fields[3]]
            if len(fields) != 3:
                raise DatasetError(
                    f"{path}, line {line_no}: expected 'query-id<TAB>corpus-id<TAB>score', got {line.strip()!r}"
                )
            try:
                score = int(fields[2])
            except ValueError as e:
                raise DatasetError(
                    f"{path}, line {line_no}: relevance score {fields[2]!r} is not an integer; "
                    "use graded integers (0, 1, 2)"
                ) from e
            qrels.setdefault(fields[0], {})[fields[1]] = score
    return qrels


def _read_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            record = _parse_line(path, line_no, raw)
            if record is None:
                continue
            if "_id" not in record or not isinstance(record.get("text"), str):
                raise DatasetError(
                    f"{path}, line {line_no}: a query needs '_id' and 'text' fields (keys: {sorted(record)})"
                )
            queries[str(record["_id"])] = record["text"]
    return queries


def load_beir(folder: str | Path, split: str = "test", *, progress: bool = False) -> BeirDataset:
    """Load one split of a BEIR-format dataset folder.

    The folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
    ``text``) and ``qrels/{split}.tsv`` (``query-id corpus-id score``, header optional). Queries are
    kept only when they have judgments in the split, as BEIR's loader does.

    :param folder: the dataset folder, e.g. ``"../shared/datasets/scifact"``.
    :param split: the qrels split to load: ``"test"``, ``"dev"`` or ``"train"``.
    :param progress: show a progress bar while reading the corpus.
    :returns: the :class:`BeirDataset`.
    :raises DatasetError: if the folder, a file or the split is missing, empty or malformed.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(
            f"BEIR folder {str(root)!r} does not exist or is not a folder; pass a folder holding "
            "corpus.jsonl, queries.jsonl and qrels/"
        )
    corpus_path, queries_path = root / "corpus.jsonl", root / "queries.jsonl"
    for required in (corpus_path, queries_path):
        if not required.is_file():
            raise DatasetError(f"{str(root)!r} is not a BEIR folder: {required.name} is missing from it")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise DatasetError(
            f"split {split!r} has no judgments: {qrels_path} is missing; "
            + (f"available splits: {', '.join(available)}" if available else "the folder has no qrels/*.tsv files")
        )

    qrels = _read_qrels(qrels_path)
    if not qrels:
        raise DatasetError(f"{qrels_path} has no judgments; it needs lines 'query-id<TAB>corpus-id<TAB>score'")
    all_queries = _read_queries(queries_path)
    if not all_queries:
        raise DatasetError(f"{queries_path} is empty; it needs one JSON object per line with '_id' and 'text'")
    missing = [qid for qid in qrels if qid not in all_queries]
    if missing:
        logger.warning(
            "%d judged queries of %s are not in %s and are dropped (e.g. %s)",
            len(missing),
            qrels_path,
            queries_path,
            ", ".join(missing[:5]),
        )
        qrels = {qid: judged for qid, judged in qrels.items() if qid in all_queries}
    queries = {qid: all_queries[qid] for qid in qrels}
    corpus = list(load_source(root, chunk=False, progress=progress))
    logger.info("Loaded %s/%s: %d documents, %d queries", root.name, split, len(corpus), len(queries))
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)


def results_to_run(results: Mapping[str, Iterable[ScoredDocument]]) -> dict[str, dict[str, float]]:
    """Turn retriever output into a run: query id -> {document id -> score}.

    :param results: query id -> the ranked results for that query.
    :returns: the run, ready for :func:`evaluate_run`. A document listed twice keeps its higher score.
    """
    run: dict[str, dict[str, float]] = {}
    for qid, hits in results.items():
        scores: dict[str, float] = {}
        for hit in hits:
            score = float(hit.score)
            if hit.id not in scores or score > scores[hit.id]:
                scores[hit.id] = score
        run[str(qid)] = scores
    return run


def _parse_metric(metric: str) -> tuple[str, str]:
    """Return (pytrec_eval measure, display name)."""
    match = re.fullmatch(r"(\w+?)@(\d+)", metric)
    if match and match.group(1) in _DISPLAY_TO_FAMILY:
        family, k = _DISPLAY_TO_FAMILY[match.group(1)], match.group(2)
        return f"{family}.{k}", f"{match.group(1)}@{k}"
    match = re.fullmatch(r"(\w+)_(\d+)", metric)
    if match and match.group(1) in _CUT_MEASURES:
        family, k = match.group(1), match.group(2)
        return f"{family}.{k}", f"{_CUT_MEASURES[family]}@{k}"
    if re.fullmatch(r"[A-Za-z_]+", metric):
        return metric, metric
    raise ConfigurationError(
        f"metrics: {metric!r} is not a metric name; use trec_eval names such as 'ndcg_cut_10', 'recall_100', "
        "'P_10', 'map', 'recip_rank', or display names such as 'ndcg@10'"
    )


def _pytrec_eval() -> Any:
    try:
        import pytrec_eval
    except ImportError as e:
        raise MissingDependencyError("pytrec-eval-terrier", "eval", "evaluation") from e
    return pytrec_eval


def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Iterable[str] = DEFAULT_METRICS,
    remove_self_hits: bool = True,
) -> dict[str, float]:
    """Score a run against judgments with `pytrec_eval`; the mean over all judged queries.

    :param run: query id -> {document id -> score}; higher scores rank first.
    :param qrels: query id -> {document id -> graded relevance}.
    :param metrics: trec_eval metric names (``"ndcg_cut_10"``, ``"recall_100"``) or display names
        (``"ndcg@10"``).
    :param remove_self_hits: drop a document whose id equals its query's id from the results.
    :returns: display metric name -> mean value, e.g. ``{"ndcg@10": 0.67, "recall@100": 0.90}``.
    :raises ConfigurationError: if `qrels` is empty or a metric name is not understood.
    :raises MissingDependencyError: if `pytrec-eval-terrier` is not installed.
    """
    parsed = [_parse_metric(m) for m in metrics]
    if not parsed:
        raise ConfigurationError("metrics is empty; pass e.g. ('ndcg_cut_10', 'recall_100')")
    judged = {str(qid): {str(d): int(r) for d, r in docs.items()} for qid, docs in qrels.items() if docs}
    if not judged:
        raise ConfigurationError("qrels has no judged queries; pass the judgments of the split you evaluate")
    pytrec_eval = _pytrec_eval()

    cleaned: dict[str, dict[str, float]] = {}
    removed = 0
    for qid, docs in run.items():
        qid = str(qid)
        if qid not in judged:
            continue
        kept = {str(d): float(s) for d, s in docs.items() if not (remove_self_hits and str(d) == qid)}
        removed += len(docs) - len(kept)
        if kept:  # pytrec_eval skips empty queries anyway; they are counted as 0 below
            cleaned[qid] = kept
    if removed:
        logger.debug("Removed %d self-hits (document id == query id) from the run", removed)
    missing = len(judged) - len(cleaned)
    if missing:
        logger.info("%d of %d judged queries have no results and count as 0", missing, len(judged))

    measures = {measure for measure, _ in parsed}
    evaluator = pytrec_eval.RelevanceEvaluator(judged, measures)
    per_query = evaluator.evaluate(cleaned)
    scores: dict[str, float] = {}
    for measure, display in parsed:
        key = measure.replace(".", "_")
        total = sum(values.get(key, 0.0) for values in per_query.values())
        scores[display] = total / len(judged)
    return scores


def format_table(scores: Mapping[str, Mapping[str, float]], digits: int = 4) -> str:
    """Format method -> {metric -> value} as an aligned plain-text table, one row per method.

    Columns are the metrics in first-seen order; a method without a metric shows ``-``.

    :param scores: method name -> {metric display name -> value}.
    :param digits: decimals shown.
    :returns: the table, lines joined by newlines (no trailing newline).
    """
    metrics: list[str] = []
    for values in scores.values():
        metrics.extend(m for m in values if m not in metrics)
    header = ["method", *metrics]
    rows = [
        [method, *(f"{values[m]:.{digits}f}" if m in values else "-" for m in metrics)]
        for method, values in scores.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def plot_scores(
    scores: Mapping[str, Mapping[str, float]],
    path: str | Path,
    title: str = "Retrieval quality",
    metrics: Iterable[str] | None = None,
) -> Path:
    """Draw grouped bars — one group per method, one bar per metric, values labelled — to an image.

    Renders with matplotlib's Agg canvas directly (no pyplot, so the user's backend is untouched).

    :param scores: method name -> {metric display name -> value}, e.g. from :func:`evaluate_run`.
    :param path: the image file to write; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).
    :param title: the plot title, e.g. ``"SciFact (BEIR test)"``.
    :param metrics: the metrics to draw, in order; default: every metric found, in first-seen order.
    :returns: the path written.
    :raises ConfigurationError: if `scores` is empty.
    :raises MissingDependencyError: if matplotlib is not installed.
    """
    if not scores:
        raise ConfigurationError("scores is empty; pass method -> {metric -> value}, e.g. from evaluate_run")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependencyError("matplotlib", "eval", "plotting evaluation results") from e

    if metrics is None:
        shown: list[str] = []
        for values in scores.values():
            shown.extend(m for m in values if m not in shown)
    else:
        shown = list(metrics)
    methods = list(scores)
    width = 0.8 / max(len(shown), 1)
    figure = Figure(figsize=(max(6.0, 1.2 * len(methods) * max(len(shown), 1) + 2), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for i, metric in enumerate(shown):
        offsets = [m + (i - (len(shown) - 1) / 2) * width for m in range(len(methods))]
        heights = [float(scores[method].get(metric, 0.0)) for method in methods]
        bars = axes.bar(offsets, heights, width, label=metric)
        axes.bar_label(bars, labels=[f"{h:.3f}" for h in heights], padding=2, fontsize=8)
    axes.set_xticks(range(len(methods)), methods)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("score")
    axes.set_title(title)
    axes.legend(loc="upper left", ncols=max(len(shown), 1), frameon=False)
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    return out
