"""`lens-rag adapt`: unsupervised domain adaptation of the sparse and dense encoders to a store's passages.

GPL-style (Wang et al. 2022), with the store's own hybrid as the teacher and no labelled query:

1. **queries** — pseudo-queries per passage: an LLM through the core client (doc2query, cached and
   resumable), or the no-LLM fallback (:class:`~lens_rag.expansion.HeuristicQueryGenerator`: the
   title and the most salient sentences). The passage that produced a query is its positive.
2. **teacher** — every pseudo-query is run through the current hybrid (BM25 + sparse + dense, min–max
   fusion, the library default) over the store; the top `candidate_k` with their fused scores are cached.
3. **mine** — positive-aware hard negatives (TopK-PercPos, NV-Retriever): a candidate whose fused score
   is at least `perc` (95 %) of the positive's is dropped as a likely unlabelled positive, and it is
   also masked out of the in-batch negatives of that query.
4. **train** — each member's *query* encoder is trained against the store's fixed document vectors:
   InfoNCE over the positive, the mined negatives and every other passage of the batch, plus an
   optional listwise KL to the teacher's fused scores (`kl_weight`). Documents keep their vectors, so
   the store needs no re-indexing: search it with ``query_model=`` (Python) or ``--sparse-query-model``
   / ``--dense-query-model`` (CLI). The query encoders are saved as ordinary model directories with a
   provenance file.

``side="both"`` (CLI ``--side both``) trains the whole models instead — GPL proper — and saves them as
``out/<member>``; their document vectors differ, so the store is re-indexed with ``lens-rag reindex``.

Why the query side only, by default: on a 2-core CPU one training step over 64 passages of 256 tokens
costs ~16 s for MiniLM, against ~0.1 s for 32 queries; the document side would also have to be
re-encoded and re-indexed after every change. Query-side adaptation of dual encoders is an established
cheap variant (the document index stays valid); the measured gains are in ``benchmarks/RESULTS.md``.

Every stage writes its output under `work_dir` and is skipped when that output exists for the same
inputs, so a re-run after an interruption resumes, and a re-run with other training options costs
training time only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError
from lens_rag.training._common import peak_rss_mib
from lens_rag.training.mining import MinedExample, mine_hard_negatives

if TYPE_CHECKING:
    from lens_rag.expansion import QueryGenerator
    from lens_rag.stores.base import Store

__all__ = [
    "AdaptOptions",
    "AdaptReport",
    "MemberReport",
    "PseudoQuery",
    "adapt_store",
    "generate_pseudo_queries",
    "mine_examples",
    "teacher_candidates",
    "train_query_encoder",
]

logger = logging.getLogger(__name__)

Member = Literal["sparse", "dense"]
QUERIES_FILE = "queries.jsonl"
TEACHER_FILE = "teacher.jsonl"


@dataclass(frozen=True)
class PseudoQuery:
    """A generated query and the passage it came from (its positive)."""

    qid: str
    text: str
    positive: str


@dataclass
class AdaptOptions:
    """Knobs of :func:`adapt_store`; the defaults are what measured best on SciFact (see RESULTS.md).

    :param members: which encoders to adapt. Default: the sparse one only — on SciFact, adapting the dense
        query encoder raised dense alone (+0.003 to +0.007 nDCG@10) but lowered the hybrid (−0.007 to −0.013)
        in every variant tried, while the adapted sparse member left the hybrid unchanged (RESULTS.md).
    :param max_passages: sample this many passages (seeded) to generate queries from; `None`: all.
    :param word_dropout: drop query words with this probability (see :func:`generate_pseudo_queries`).
    :param candidate_k: teacher candidates kept per query.
    :param negatives: mined hard negatives per query.
    :param perc: TopK-PercPos threshold (fraction of the positive's teacher score).
    :param epochs: passes over the mined examples.
    :param batch_size: queries per step.
    :param lr: AdamW learning rate per member.
    :param temperature: InfoNCE temperature per member (cosine students want ~0.05; SPLADE dot products ~1).
    :param kl_weight: weight of the listwise KL to the teacher's fused scores (0 turns it off).
    :param teacher_temperature: temperature of the teacher's fused scores in the KL term.
    :param budget_minutes: stop training when this much wall time has been spent on it (all members
        together, split evenly); `None`: no limit.
    :param seed: seeds sampling, shuffling and torch.
    :param threads: torch threads while training (`None`: torch's default).
    :param device: where the students train, e.g. ``"cuda"``; `None`: CUDA when available, else the CPU.
    :param side: ``"query"`` (default) trains the query encoders against the store's fixed document vectors;
        ``"both"`` trains the whole model, documents included (GPL proper: each step encodes the batch's
        passages with gradients — ~16 s per 64 passages for MiniLM on 2 CPU cores, a GPU's job) and the
        store must then be re-indexed with it (``lens-rag reindex``).
    :param progress: show progress bars.
    """

    members: tuple[Member, ...] = ("sparse",)
    max_passages: int | None = None
    word_dropout: float = 0.5
    candidate_k: int = 30
    negatives: int = 8
    perc: float = 0.95
    epochs: int = 1
    batch_size: int = 32
    lr: dict[str, float] = field(default_factory=lambda: {"dense": 2e-5, "sparse": 2e-5})
    temperature: dict[str, float] = field(default_factory=lambda: {"dense": 0.05, "sparse": 1.0})
    kl_weight: float = 0.0
    teacher_temperature: float = 0.1
    budget_minutes: float | None = None
    seed: int = 0
    threads: int | None = None
    device: str | None = None
    side: Literal["query", "both"] = "query"
    progress: bool = True

    def validate(self) -> None:
        for m in self.members:
            if m not in ("sparse", "dense"):
                raise ConfigurationError(f"members must be 'sparse' and/or 'dense', got {m!r}")
        for name in ("candidate_k", "negatives", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if self.max_passages is not None and (not isinstance(self.max_passages, int) or self.max_passages < 1):
            raise ConfigurationError(f"max_passages must be a positive integer or None, got {self.max_passages!r}")
        if not 0 < self.perc <= 1:
            raise ConfigurationError(f"perc must be in (0, 1], got {self.perc!r}")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise ConfigurationError(f"budget_minutes must be > 0 or None, got {self.budget_minutes!r}")
        if self.side not in ("query", "both"):
            raise ConfigurationError(f"side must be 'query' or 'both', got {self.side!r}")
        if self.kl_weight < 0:
            raise ConfigurationError(f"kl_weight must be >= 0, got {self.kl_weight!r}")


@dataclass
class MemberReport:
    """What training one member did."""

    member: str
    source_model: str
    out: str
    steps: int
    examples: int
    seconds: float
    first_loss: float
    last_loss: float
    stopped_by_budget: bool


@dataclass
class AdaptReport:
    """What :func:`adapt_store` did, stage by stage (seconds, counts, peak memory)."""

    passages: int = 0
    queries: int = 0
    examples: int = 0
    dropped_false_negatives: int = 0
    skipped_queries: int = 0
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: list[MemberReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)  # atomic: an interrupted stage leaves no half file behind


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------- stage 1: queries
def generate_pseudo_queries(
    documents: Sequence[Document],
    generator: QueryGenerator,
    *,
    max_passages: int | None = None,
    word_dropout: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> list[PseudoQuery]:
    """Pseudo-queries for (a seeded sample of) the passages; each query's positive is its passage.

    Queries equal to another passage's query are dropped (an ambiguous label), as are empty ones.

    :param word_dropout: drop each word of a query with this probability (seeded; at least three words
        stay). Text copied from a passage (titles, sentences) is found by BM25 at rank 1 almost always, so
        it teaches nothing the hybrid does not know; deleting words (as Contriever's augmentation does)
        leaves queries that need more than exact overlap.
    """
    if not 0 <= word_dropout < 1:
        raise ConfigurationError(f"word_dropout must be in [0, 1), got {word_dropout!r}")
    rng = random.Random(seed)
    docs = list(documents)
    if max_passages is not None and max_passages < len(docs):
        docs = random.Random(seed).sample(docs, max_passages)
    generated = generator.generate(docs, progress=progress)
    seen: dict[str, str] = {}
    clash: set[str] = set()
    for doc, queries in zip(docs, generated, strict=True):
        for q in queries:
            key = " ".join(q.lower().split())
            if key in seen and seen[key] != doc.id:
                clash.add(key)
            seen.setdefault(key, doc.id)
    out = []
    for doc, queries in zip(docs, generated, strict=True):
        for j, q in enumerate(dict.fromkeys(" ".join(q.split()) for q in queries)):
            if q and " ".join(q.lower().split()) not in clash:
                out.append(PseudoQuery(f"{doc.id}#{j}", _drop_words(q, word_dropout, rng), doc.id))
    return out


def _drop_words(text: str, p: float, rng: random.Random) -> str:
    words = text.split()
    if p <= 0 or len(words) <= 3:
        return text
    kept = [w for w in words if rng.random() >= p]
    if len(kept) < 3:  # keep three words, in their order
        kept = [words[i] for i in sorted(rng.sample(range(len(words)), 3))]
    return " ".join(kept)


# ---------------------------------------------------------------------------------------- stage 2: teacher
def teacher_candidates(
    store: Store,
    queries: Sequence[PseudoQuery],
    *,
    sparse_encoder: Any | None,
    dense_encoder: Any | None,
    candidate_k: int = 30,
    depth: int = 100,
    progress: bool = False,
) -> list[list[tuple[str, float]]]:
    """The hybrid teacher's top `candidate_k` `(id, fused score)` per query (min–max fusion of every source).

    Queries are encoded in batches; each source is searched at `depth` (the hybrid's candidate depth).
    """
    from lens_rag.encoders.pooling import progress_bar
    from lens_rag.fusion import fuse

    texts = [q.text for q in queries]
    sparse_vecs = sparse_encoder.encode_queries(texts) if sparse_encoder is not None else None
    dense_vecs = None
    if dense_encoder is not None:
        arr = getattr(dense_encoder, "encode_queries_array", None)
        dense_vecs = arr(texts) if callable(arr) else np.asarray(dense_encoder.encode_queries(texts), np.float32)
    out: list[list[tuple[str, float]]] = []
    bar = progress_bar(len(queries), progress, "teacher (hybrid) candidates")
    try:
        for i, q in enumerate(queries):
            lists = {"bm25": store.search_bm25(q.text, top_k=depth)}
            if sparse_vecs is not None:
                lists["sparse"] = store.search_sparse(sparse_vecs[i], top_k=depth)
            if dense_vecs is not None:
                lists["dense"] = store.search_dense(dense_vecs[i].tolist(), top_k=depth)
            fused = fuse(lists, "minmax", top_k=candidate_k)
            out.append([(h.id, float(h.score)) for h in fused])
            bar.update(1)
    finally:
        bar.close()
    return out


# ---------------------------------------------------------------------------------------- stage 3: mining
def mine_examples(
    queries: Sequence[PseudoQuery],
    candidates: Sequence[Sequence[tuple[str, float]]],
    *,
    negatives: int = 8,
    perc: float = 0.95,
) -> tuple[list[MinedExample], int]:
    """TopK-PercPos over each query's teacher candidates.

    A query whose positive the teacher does not retrieve within its candidates is skipped (its label
    and the teacher disagree too much to mine from).

    :returns: the examples and how many queries were skipped.
    """
    examples, skipped = [], 0
    for q, cands in zip(queries, candidates, strict=True):
        ex = mine_hard_negatives(q.text, q.positive, cands, k=negatives, perc=perc)
        if ex is None:
            skipped += 1
        else:
            examples.append(ex)
    return examples, skipped


# ---------------------------------------------------------------------------------------- stage 4: training
def _document_vectors(member: str, encoder: Any, docs: Sequence[Document], cache_dir: Path | None) -> Any:
    """The store-side vectors of `docs` from the original document encoder (through the embedding cache)."""
    from lens_rag.indexing import EmbeddingCache, cached_vectors
    from lens_rag.training._common import sparse_rows_to_csr

    ordered = cached_vectors(encoder, docs, EmbeddingCache(cache_dir) if cache_dir is not None else None)
    if member == "dense":
        return np.asarray(ordered, dtype=np.float32)
    return sparse_rows_to_csr(ordered, int(encoder.dimension))


def train_query_encoder(
    student: Any,
    doc_vectors: Any,
    doc_row: dict[str, int],
    examples: Sequence[MinedExample],
    *,
    lr: float,
    temperature: float,
    epochs: int = 1,
    batch_size: int = 32,
    kl_weight: float = 0.0,
    teacher_temperature: float = 0.1,
    seconds: float | None = None,
    seed: int = 0,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    document_texts: dict[str, str] | None = None,
) -> tuple[int, list[float], bool]:
    """Train `student`'s query side against fixed document vectors (or both sides, see `document_texts`).

    Each step takes `batch_size` examples; the candidate columns are the union of their positives and
    negatives. A query's loss is InfoNCE over all columns with its own positive as the label and its
    dropped likely-false-negatives masked out, plus `kl_weight` × the listwise KL between the student's
    and the teacher's scores over its own positive and negatives.

    :param doc_vectors: `[N, D]` numpy array (dense) or scipy CSR matrix (sparse) of document vectors.
    :param doc_row: document id → row of `doc_vectors`.
    :param seconds: wall-time budget; training stops after the step that exceeds it.
    :param document_texts: document id → text: the batch's passages are encoded by the student with
        gradients (both sides train) instead of read from `doc_vectors` (`None`: query side only).
    :returns: steps run, the loss of every step, and whether the budget stopped it.
    """
    import torch

    from lens_rag.encoders.pooling import progress_bar
    from lens_rag.training.losses import listwise_kl_loss

    torch.manual_seed(seed)
    rng = random.Random(seed)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    order = [i for _ in range(epochs) for i in rng.sample(range(len(examples)), len(examples))]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    total = len(batches)
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup))
    )
    dense_docs = isinstance(doc_vectors, np.ndarray)
    device = params[0].device if params else torch.device("cpu")
    losses: list[float] = []
    start = time.monotonic()
    stopped = False
    student.train()
    bar = progress_bar(total, progress, "training query encoder")
    try:
        for step, batch in enumerate(batches):
            exs = [examples[i] for i in batch]
            ids = list(dict.fromkeys(d for ex in exs for d in (ex.positive, *ex.negatives)))
            col = {d: j for j, d in enumerate(ids)}
            rows = [doc_row[d] for d in ids]
            if document_texts is not None:
                docs_t = student.encode_documents([document_texts[d] for d in ids])
            elif dense_docs:
                docs_t = torch.from_numpy(doc_vectors[rows]).to(device)
            else:
                docs_t = torch.from_numpy(doc_vectors[rows].toarray()).to(device)
            q = student.encode_queries([ex.query for ex in exs])
            scores = q @ docs_t.T  # [B, C]
            mask = torch.ones_like(scores, dtype=torch.bool)
            labels = torch.tensor([col[ex.positive] for ex in exs], device=device)
            for r, ex in enumerate(exs):  # a likely unlabelled positive is no negative, in-batch either
                for d in ex.dropped:
                    if d in col:
                        mask[r, col[d]] = False
            logits = (scores / temperature).masked_fill(~mask, torch.finfo(scores.dtype).min)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            if kl_weight > 0:
                own = [[col[ex.positive], *(col[n] for n in ex.negatives)] for ex in exs if ex.negatives]
                teacher = [[ex.positive_score, *ex.negative_scores] for ex in exs if ex.negatives]
                width = max(len(t) for t in teacher)
                t_scores = torch.full((len(teacher), width), float("-inf"), device=device)
                s_idx = torch.zeros((len(teacher), width), dtype=torch.long, device=device)
                kl_mask = torch.zeros((len(teacher), width), dtype=torch.bool, device=device)
                for r, (t, o) in enumerate(zip(teacher, own, strict=True)):
                    t_scores[r, : len(t)] = torch.tensor(t, device=device)
                    s_idx[r, : len(t)] = torch.tensor(o[: len(t)], device=device)
                    kl_mask[r, : len(t)] = True
                s_scores = torch.gather(scores, 1, s_idx)
                loss = loss + kl_weight * listwise_kl_loss(
                    s_scores, t_scores.nan_to_num(neginf=0.0), temperature, teacher_temperature, mask=kl_mask
                )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.update(1)
            if on_step is not None:
                on_step(step, losses[-1])
            if seconds is not None and time.monotonic() - start > seconds:
                stopped = step + 1 < total
                break
    finally:
        bar.close()
        student.eval()
    return len(losses), losses, stopped


# ---------------------------------------------------------------------------------------- the whole run
def _recorded_encoder(store: Store, kind: str) -> Any:
    """The encoder the store recorded for `kind`, else the packaged default."""
    from lens_rag.components import dense_encoder_from_config, sparse_encoder_from_config
    from lens_rag.identity import recorded_identity
    from lens_rag.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL

    info: Any = getattr(store, "info", None)  # a property on both stores
    recorded = recorded_identity(info if isinstance(info, dict) else {}, kind)
    config = recorded.get("config") if recorded is not None else None
    if not isinstance(config, dict):
        config = {"type": "mlm", "model": DEFAULT_SPARSE_MODEL} if kind == "sparse" else {"model": DEFAULT_DENSE_MODEL}
    build = sparse_encoder_from_config if kind == "sparse" else dense_encoder_from_config
    return build(config)


def adapt_store(
    store: Store,
    out: str | Path,
    *,
    sparse_encoder: Any | None = None,
    dense_encoder: Any | None = None,
    generator: QueryGenerator | None = None,
    options: AdaptOptions | None = None,
    work_dir: str | Path | None = None,
    embedding_cache: str | Path | None = None,
) -> AdaptReport:
    """Adapt the query encoders of `sparse_model` and `dense_model` to the passages in `store`.

    :param store: the store whose passages (and document vectors, from these models) to adapt to.
    :param out: output directory; each member is saved to ``out/<member>-query``.
    :param sparse_encoder: the sparse (SPLADE-style) encoder the store was indexed with; `None`: the one
        the store records (else SPLADE-tiny). Its model is the student's starting point.
    :param dense_encoder: likewise for the dense encoder (else all-MiniLM-L6-v2).
    :param generator: pseudo-query source; `None`: :class:`HeuristicQueryGenerator` with the title and
        two salient sentences per passage.
    :param options: see :class:`AdaptOptions`.
    :param work_dir: cache of the intermediate stages (`None`: ``out/work``).
    :param embedding_cache: where document vectors are cached (`None`: the library default).
    :returns: the report; also written to ``out/adapt_report.json``.
    :raises ConfigurationError: on bad options or an empty store.
    """
    import torch

    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.expansion import HeuristicQueryGenerator
    from lens_rag.identity import ensure_encoder
    from lens_rag.indexing import default_cache_dir
    from lens_rag.training.students import DenseStudent, SparseStudent

    opts = options or AdaptOptions()
    opts.validate()
    out_dir = Path(out)
    work = Path(work_dir) if work_dir is not None else out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(embedding_cache) if embedding_cache is not None else default_cache_dir() / "embeddings"
    gen = generator or HeuristicQueryGenerator(sentences=2)
    report = AdaptReport()
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)

    def stage(name: str, t0: float, **extra: Any) -> None:
        report.stages[name] = {"seconds": round(time.monotonic() - t0, 2), "peak_rss_mib": round(peak_rss_mib())}
        report.stages[name].update(extra)
        logger.info("adapt: %s done in %.1f s", name, report.stages[name]["seconds"])

    t0 = time.monotonic()
    docs = [d for d in store.iter_documents() if d.content.strip()]
    if not docs:
        raise ConfigurationError("the store holds no documents to adapt to; index your passages first")
    docs.sort(key=lambda d: d.id)
    report.passages = len(docs)
    sparse_enc = sparse_encoder if sparse_encoder is not None else _recorded_encoder(store, "sparse")
    dense_enc = dense_encoder if dense_encoder is not None else _recorded_encoder(store, "dense")
    if not isinstance(sparse_enc, MLMSparseEncoder) and "sparse" in opts.members:
        raise ConfigurationError(
            f"sparse adaptation trains SPLADE-style masked LMs (MLMSparseEncoder), not {type(sparse_enc).__name__}; "
            "pass members=('dense',) (CLI: --members dense)"
        )
    if not isinstance(dense_enc, SentenceTransformerDenseEncoder) and "dense" in opts.members:
        raise ConfigurationError(f"dense adaptation trains SentenceTransformerDenseEncoder models, not {dense_enc!r}")
    sparse_model = str(sparse_enc.to_config()["model"])
    dense_model = str(dense_enc.to_config()["model"])
    # The teacher and the document vectors must be the store's: refuse other encoders up front.
    ensure_encoder(store, "sparse", sparse_enc, record=False)
    ensure_encoder(store, "dense", dense_enc, record=False)
    stage("load", t0)

    # 1. queries
    t0 = time.monotonic()
    # The generator's plain settings (an LLM client or cache object has no stable text form).
    settings = {k: v for k, v in getattr(gen, "__dict__", {}).items() if isinstance(v, (str, int, float, bool))}
    llm = getattr(gen, "llm", None)
    if llm is not None:
        settings["llm"] = getattr(llm, "model", None) or type(llm).__name__
    key = _fingerprint(getattr(gen, "name", type(gen).__name__), settings, opts.max_passages, opts.word_dropout,
                       opts.seed, [(d.id, d.content) for d in docs])  # fmt: skip
    qfile = work / QUERIES_FILE
    cached = _read_jsonl(qfile) if qfile.is_file() else []
    if cached and cached[0].get("fingerprint") == key:
        queries = [PseudoQuery(**row) for row in cached[1:]]
        stage("queries", t0, cached=True, queries=len(queries))
    else:
        queries = generate_pseudo_queries(
            docs,
            gen,
            max_passages=opts.max_passages,
            word_dropout=opts.word_dropout,
            seed=opts.seed,
            progress=opts.progress,
        )
        _write_jsonl(qfile, [{"fingerprint": key}, *(asdict(q) for q in queries)])
        stage("queries", t0, cached=False, queries=len(queries))
    report.queries = len(queries)
    if not queries:
        raise ConfigurationError("no pseudo-queries were generated; check the generator (titles, sentences, LLM)")

    # 2. teacher
    t0 = time.monotonic()
    tkey = _fingerprint(key, opts.candidate_k, store.to_config(), sparse_model, dense_model, store.count_documents())
    tfile = work / TEACHER_FILE
    cached = _read_jsonl(tfile) if tfile.is_file() else []
    if cached and cached[0].get("fingerprint") == tkey:
        candidates = [[(i, s) for i, s in row["candidates"]] for row in cached[1:]]
        stage("teacher", t0, cached=True)
    else:
        candidates = teacher_candidates(
            store,
            queries,
            sparse_encoder=sparse_enc,
            dense_encoder=dense_enc,
            candidate_k=opts.candidate_k,
            progress=opts.progress,
        )
        rows = [{"qid": q.qid, "candidates": c} for q, c in zip(queries, candidates, strict=True)]
        _write_jsonl(tfile, [{"fingerprint": tkey}, *rows])
        stage("teacher", t0, cached=False)

    # 3. mining
    t0 = time.monotonic()
    examples, skipped = mine_examples(queries, candidates, negatives=opts.negatives, perc=opts.perc)
    report.examples, report.skipped_queries = len(examples), skipped
    report.dropped_false_negatives = sum(len(ex.dropped) for ex in examples)
    stage("mine", t0, examples=len(examples), skipped=skipped, dropped=report.dropped_false_negatives)
    if not examples:
        raise ConfigurationError(
            "no training example survived mining: the teacher retrieves none of the pseudo-queries' passages"
        )

    # 4. training, one member at a time, each against the store's own document vectors
    by_id = {d.id: d for d in docs}
    needed = sorted({d for ex in examples for d in (ex.positive, *ex.negatives)})
    doc_row = {d: i for i, d in enumerate(needed)}
    budget = None if opts.budget_minutes is None else opts.budget_minutes * 60 / len(opts.members)
    for member in opts.members:
        both = opts.side == "both"
        target = out_dir / (member if both else f"{member}-query")
        t0 = time.monotonic()
        encoder = sparse_enc if member == "sparse" else dense_enc
        vectors = None if both else _document_vectors(member, encoder, [by_id[d] for d in needed], cache_dir)
        source = sparse_model if member == "sparse" else dense_model
        if member == "sparse":
            cfg = sparse_enc.to_config()
            qlen = cfg.get("query_max_length") or cfg.get("max_length") or 256
            student: Any = SparseStudent(source, max_length=cfg.get("max_length") or 256, query_max_length=qlen)
        else:
            student = DenseStudent(source)
        student.to(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        steps, losses, stopped = train_query_encoder(
            student,
            vectors,
            doc_row,
            examples,
            lr=opts.lr[member],
            temperature=opts.temperature[member],
            epochs=opts.epochs,
            batch_size=opts.batch_size,
            kl_weight=opts.kl_weight,
            teacher_temperature=opts.teacher_temperature,
            seconds=budget,
            seed=opts.seed,
            progress=opts.progress,
            document_texts={d: by_id[d].content for d in needed} if both else None,
        )
        provenance = {
            "kind": member,
            "side": opts.side,
            "document_model": str(target) if both else source,
            "adapted_from": source,
            "method": "lens-rag adapt (GPL-style: pseudo-queries, hybrid teacher, TopK-PercPos, InfoNCE"
            + (" + listwise KL" if opts.kl_weight > 0 else "")
            + ")",
            "generator": getattr(gen, "name", type(gen).__name__),
            "options": asdict(opts),
            "passages": len(docs),
            "queries": len(queries),
            "examples": len(examples),
            "steps": steps,
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "stopped_by_budget": stopped,
            "store": store.to_config(),
        }
        student.save(target, provenance)
        secs = time.monotonic() - t0
        stage(f"train:{member}", t0, steps=steps)
        report.members.append(
            MemberReport(
                member,
                source,
                str(target),
                steps,
                len(examples),
                round(secs, 1),
                losses[0] if losses else float("nan"),
                losses[-1] if losses else float("nan"),
                stopped,
            )
        )
    (out_dir / "adapt_report.json").write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    return report
