"""Build a LENS clustered head: k-means over the LM-head rows, centroids as the new head.

**The output of this module is untrained.** METHODS.md: LENS trains the model after clustering; on
SciFact, SPLADE-tiny with a k = 4,000 centroid head used without training falls from 0.644 to 0.167
nDCG@10. Use the built directory as the starting point of LENS fine-tuning, never as a retriever as is.

Layout written by :func:`save_lens_model` (loaded by :class:`~lens_rag.encoders.lens.LENSEncoder`):
the decoder backbone (`save_pretrained`, safetensors), its tokenizer with the LENS marker tokens
`<instruct>`, `<query>`, `<response>` added, `lens_head.safetensors` (`weight`: k × hidden centroids;
`token_to_cluster`: the cluster of every vocabulary token) and `lens_config.json`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from lens_rag.encoders.lens import DEFAULT_INSTRUCTION, HEAD_FILE, LENS_CONFIG_FILE, MARKER_TOKENS
from lens_rag.encoders.pooling import library_versions, progress_bar
from lens_rag.errors import ConfigurationError, ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "UNTRAINED_WARNING",
    "ClusteredHead",
    "build_head_command",
    "build_lens_head",
    "centroids_from_assignments",
    "cluster_bias",
    "kmeans",
    "load_causal_lm",
    "save_lens_model",
]

logger = logging.getLogger(__name__)

UNTRAINED_WARNING = (
    "the clustered LENS head is UNTRAINED and needs fine-tuning before use: on SciFact an untrained "
    "4,000-cluster head took SPLADE-tiny from 0.644 to 0.167 nDCG@10 (METHODS.md)"
)


@dataclass(frozen=True)
class ClusteredHead:
    """Result of :func:`build_lens_head`.

    :param weight: `[k, hidden]` float32 centroids — the rows of the new head.
    :param token_to_cluster: `[vocab]` int64 cluster of every LM-head row.
    :param seed: the k-means seed.
    :param iterations: Lloyd iterations run.
    :param inertia: final sum of squared distances to the centroids.
    :param bias: `[k]` cluster biases of a head with a bias (an MLM decoder): the mean of the members'
        biases, so that cluster logit = mean of the member tokens' logits still holds; `None` without one.
    """

    weight: torch.Tensor
    token_to_cluster: torch.Tensor
    seed: int
    iterations: int
    inertia: float
    bias: torch.Tensor | None = None

    @property
    def n_clusters(self) -> int:
        return int(self.weight.shape[0])


def centroids_from_assignments(weight: torch.Tensor, assignments: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Mean of the rows of each cluster: the head whose cluster logit is the mean of its members' logits.

    :param weight: `[vocab, hidden]` LM-head rows.
    :param assignments: `[vocab]` cluster ids in `[0, n_clusters)`.
    :param n_clusters: number of clusters (an empty cluster gets a zero row).
    :returns: `[n_clusters, hidden]` float32 centroids.
    """
    w = weight.detach().float()
    a = assignments.long()
    sums = torch.zeros((n_clusters, w.shape[1]), dtype=torch.float64).index_add_(0, a, w.double())
    counts = torch.bincount(a, minlength=n_clusters).clamp_(min=1).double()
    return (sums / counts[:, None]).float()


def _assign(x: np.ndarray, centroids: np.ndarray, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (squared L2) of every row: labels int64 and squared distances."""
    if backend == "faiss":
        import faiss

        index = faiss.IndexFlatL2(centroids.shape[1])
        index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        dist, labels = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
        return labels[:, 0].astype(np.int64), dist[:, 0]
    from sklearn.metrics import pairwise_distances_argmin_min

    labels, dist = pairwise_distances_argmin_min(x, centroids, metric="sqeuclidean")
    return labels.astype(np.int64), dist.astype(np.float32)


def kmeans(
    x: np.ndarray, n_clusters: int, seed: int = 0, n_iter: int = 20, backend: str | None = None, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Deterministic Lloyd k-means (random distinct rows as initial centroids, drawn with `seed`).

    Empty clusters are refilled with the rows farthest from their centroid. Stops early when no
    assignment changes.

    :param x: `[n, d]` float32 points.
    :param n_clusters: k, at most n.
    :param seed: seed of the initial centroid draw.
    :param n_iter: maximum iterations.
    :param backend: `"faiss"` or `"sklearn"` for the nearest-centroid search; `None` = faiss if installed.
    :param progress: show a progress bar over iterations.
    :returns: centroids `[k, d]`, labels `[n]`, iterations run, inertia.
    """
    if backend is None:
        try:
            import faiss  # noqa: F401

            backend = "faiss"
        except ImportError:
            backend = "sklearn"
    if backend not in ("faiss", "sklearn"):
        raise ConfigurationError(f"backend={backend!r} is not supported; use 'faiss', 'sklearn' or None")
    x = np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    centroids = x[np.sort(rng.choice(x.shape[0], n_clusters, replace=False))].copy()
    xt = torch.from_numpy(x).double()
    labels = np.full(x.shape[0], -1, dtype=np.int64)
    inertia, it = float("nan"), 0
    bar = progress_bar(n_iter, progress, f"k-means k={n_clusters} ({backend})")
    bar.unit = "iter"
    try:
        for step in range(1, n_iter + 1):
            it = step
            new_labels, dist = _assign(x, centroids, backend)
            inertia = float(dist.sum(dtype=np.float64))
            changed = int((new_labels != labels).sum())
            labels = new_labels
            counts = np.bincount(labels, minlength=n_clusters)
            empty = np.flatnonzero(counts == 0)
            if empty.size:
                # Deterministic repair: move the farthest points into the empty clusters.
                far = np.argsort(-dist, kind="stable")[: empty.size]
                labels[far] = empty
            sums = torch.zeros((n_clusters, x.shape[1]), dtype=torch.float64).index_add_(
                0, torch.from_numpy(labels), xt
            )
            cnt = torch.from_numpy(np.bincount(labels, minlength=n_clusters)).clamp_(min=1).double()
            centroids = (sums / cnt[:, None]).float().numpy()
            bar.set_postfix(inertia=f"{inertia:.4g}", changed=changed)
            bar.update(1)
            if changed == 0 and not empty.size:
                break
    finally:
        bar.close()
    return centroids, labels, it, inertia


def cluster_bias(bias: torch.Tensor, assignments: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Mean of the biases of each cluster's members (zero for an empty cluster).

    With centroid rows and these biases, a cluster's logit is exactly the mean of its member tokens'
    logits: `mean_t (w_t·h + b_t) = (mean_t w_t)·h + mean_t b_t`.

    :param bias: `[vocab]` head biases.
    :param assignments: `[vocab]` cluster ids.
    :param n_clusters: number of clusters.
    :returns: `[n_clusters]` float32 biases.
    """
    return centroids_from_assignments(bias.detach().float().reshape(-1, 1), assignments, n_clusters)[:, 0]


def _lm_head_bias(model: nn.Module | torch.Tensor) -> torch.Tensor | None:
    if isinstance(model, torch.Tensor):
        return None
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    bias = getattr(head, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def _lm_head_weight(model: nn.Module | torch.Tensor) -> torch.Tensor:
    if isinstance(model, torch.Tensor):
        if model.dim() != 2:
            raise ConfigurationError(f"an LM-head weight must be 2-D (vocab × hidden), got shape {tuple(model.shape)}")
        return model
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None or getattr(head, "weight", None) is None:
        raise ModelLoadError(
            f"{type(model).__name__} has no LM head (get_output_embeddings() returned None): the clustered head "
            "is built from the LM-head rows. Load the model with AutoModelForCausalLM (e.g. *ForCausalLM), not "
            "the bare backbone"
        )
    return head.weight


def build_lens_head(
    model: nn.Module | torch.Tensor,
    n_clusters: int,
    seed: int = 0,
    *,
    n_iter: int = 20,
    backend: str | None = None,
    progress: bool = True,
    bias: torch.Tensor | None = None,
    warn_untrained: bool = True,
) -> ClusteredHead:
    """K-means over the LM-head rows; the centroids become a `Linear(hidden, k)` head.

    **The result is untrained and needs fine-tuning** (METHODS.md: an untrained 4,000-cluster head took
    SPLADE-tiny from 0.644 to 0.167 nDCG@10 on SciFact); a warning is logged unless `warn_untrained` is
    False (:mod:`lens_rag.training.cluster_head` trains it right after).

    A head with a bias (an MLM decoder such as BERT's/SPLADE's) gets cluster biases too: the mean of the
    members' biases (:func:`cluster_bias`), so cluster logit = mean of the member tokens' logits.

    :param model: a causal/masked LM with an LM head, or its `[vocab, hidden]` head weight.
    :param n_clusters: k (4,000 or 8,000 in the paper); 1 ≤ k ≤ vocabulary size.
    :param seed: k-means seed; the same seed gives the same head.
    :param n_iter: maximum Lloyd iterations.
    :param backend: nearest-centroid search: `"faiss"`, `"sklearn"`, or `None` (faiss when installed).
    :param progress: show a progress bar.
    :param bias: the `[vocab]` head bias when `model` is a bare weight; read from the model's head otherwise.
    :param warn_untrained: log the "untrained" warning.
    :returns: the centroids (and cluster biases) and the token → cluster map.
    :raises ConfigurationError: if `n_clusters` is not in `[1, vocab]`, or `bias` does not match the vocabulary.
    :raises ModelLoadError: if the model has no LM head.

    Usage::

        from transformers import AutoModelForCausalLM
        lm = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M")
        head = build_lens_head(lm, n_clusters=4000, seed=0)  # then fine-tune!
    """
    weight = _lm_head_weight(model).detach().float().cpu()
    vocab = int(weight.shape[0])
    if not isinstance(n_clusters, int) or isinstance(n_clusters, bool) or not 1 <= n_clusters <= vocab:
        raise ConfigurationError(
            f"n_clusters must be between 1 and the vocabulary size ({vocab}), got {n_clusters!r}; "
            "the paper uses 4000 or 8000 for a 32k vocabulary"
        )
    head_bias = _lm_head_bias(model) if bias is None else bias
    if head_bias is not None and tuple(head_bias.shape) != (vocab,):
        raise ConfigurationError(f"bias must have shape ({vocab},) like the head's rows, got {tuple(head_bias.shape)}")
    if warn_untrained:
        logger.warning("building a %s-cluster LENS head: %s", n_clusters, UNTRAINED_WARNING)
    t0 = time.perf_counter()
    _, labels, iterations, inertia = kmeans(weight.numpy(), n_clusters, seed, n_iter, backend, progress)
    assignments = torch.from_numpy(labels)
    # Exact means of the final assignment, so that cluster logit = mean of member-token logits holds.
    centroids = centroids_from_assignments(weight, assignments, n_clusters)
    biases = None if head_bias is None else cluster_bias(head_bias, assignments, n_clusters)
    logger.info("k-means over %s × %s rows took %.1f s", vocab, weight.shape[1], time.perf_counter() - t0)
    return ClusteredHead(centroids, assignments, seed, iterations, inertia, biases)


def load_causal_lm(model: str, gguf_file: str | None = None) -> tuple[PreTrainedModel, Any]:
    """Load a causal LM and its tokenizer from a directory/name, optionally a GGUF file in it.

    :raises ModelLoadError: if loading fails or the checkpoint has no LM-head weights.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lens_rag.models import resolve_model

    path = resolve_model(model)
    kwargs: dict[str, Any] = {}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        # output_loading_info=True returns (model, loading_info); transformers annotates only the model.
        lm, info = cast(
            "tuple[PreTrainedModel, dict[str, Any]]",
            AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, output_loading_info=True, **kwargs),
        )
    except (OSError, ValueError, ImportError) as e:
        raise ModelLoadError(f"could not load causal LM model={model!r} gguf_file={gguf_file!r}: {e}") from e
    tied = bool(getattr(lm.config, "tie_word_embeddings", False))
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(f"{lm.base_model_prefix}.")]
    if missing and not tied:
        raise ModelLoadError(
            f"model={model!r} has no LM head: {missing} missing from the checkpoint (a bare backbone such as "
            "MistralModel?). The clustered head is built from trained LM-head rows; pass a *ForCausalLM checkpoint"
        )
    return lm, tokenizer


def save_lens_model(
    backbone: nn.Module,
    tokenizer: Any,
    head: torch.Tensor | ClusteredHead,
    out: str | Path,
    *,
    info: dict[str, Any] | None = None,
    encoder: dict[str, Any] | None = None,
) -> Path:
    """Write a LENS model directory that :class:`~lens_rag.encoders.lens.LENSEncoder` loads.

    :param backbone: the decoder without LM head (a `*ForCausalLM` is reduced to its `base_model`).
    :param tokenizer: its tokenizer.
    :param head: the `[k, hidden]` centroids, or a :class:`ClusteredHead`.
    :param out: target directory (created).
    :param info: extra provenance recorded in `lens_config.json`.
    :param encoder: encoder defaults recorded for :meth:`LENSEncoder.load` (instruction, max_length).
    :returns: the directory.
    """
    from safetensors.torch import save_file
    from transformers import AutoModel

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if getattr(backbone, "get_output_embeddings", lambda: None)() is not None and hasattr(backbone, "base_model"):
        backbone = cast("PreTrainedModel", backbone).base_model
    # GGUF-loaded models refuse save_pretrained: copy the weights into a fresh model built from the config.
    fresh = AutoModel.from_config(backbone.config, dtype=torch.float32)
    fresh.load_state_dict({k: v.float() for k, v in backbone.state_dict().items()}, strict=True)
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    tensors: dict[str, torch.Tensor] = {}
    if isinstance(head, ClusteredHead):
        tensors = {"weight": head.weight.contiguous(), "token_to_cluster": head.token_to_cluster.contiguous()}
    else:
        tensors = {"weight": head.detach().float().contiguous()}
    save_file(tensors, str(out_dir / HEAD_FILE))
    config = {
        "format": "lens-rag/1",
        "n_clusters": int(tensors["weight"].shape[0]),
        "hidden_size": int(tensors["weight"].shape[1]),
        "pooling": {
            "activation": "log(1 + relu(logits))",
            "reduction": "max",
            "queries": "from the <query> token up to, excluding, the last content token and EOS",
            "documents": "all positions except the last two (last content token and EOS)",
            "normalisation": "l2",
            "padding_side": "left",
            "attention": "bidirectional",
        },
        **(info or {}),
        "encoder": {"instruction": DEFAULT_INSTRUCTION, "max_length": 512} | (encoder or {}),
        "library_versions": library_versions(),
    }
    (out_dir / LENS_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out_dir


def add_marker_tokens(tokenizer: Any, backbone: nn.Module) -> int:
    """Add the LENS marker tokens as special tokens and grow the input embeddings (mean-initialised).

    :returns: how many tokens were added.
    """
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    new = [AddedToken(t, special=True, normalized=False) for t in MARKER_TOKENS if t not in vocab]
    if not new:
        return 0
    added = tokenizer.add_tokens(new, special_tokens=True)
    model = cast("PreTrainedModel", backbone)  # a transformers model; `nn.Module` does not declare these methods
    emb_weight = cast(torch.Tensor, model.get_input_embeddings().weight)
    if len(tokenizer) > emb_weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return int(added)


def build_head_command(
    model: str,
    n_clusters: int,
    out: str,
    seed: int = 0,
    gguf_file: str | None = None,
    progress: bool = True,
) -> Path:
    """`lens-rag build-head`: load a causal LM, cluster its LM head, write a LENS model directory.

    **The written model is untrained and needs fine-tuning before retrieval use** (see module docstring).
    A masked LM (e.g. ``"splade-tiny"``) gets an untrained clustered MLM directory instead, which
    `MLMSparseEncoder` loads (:func:`lens_rag.training.cluster_head.export_clustered_mlm`); train it with
    :func:`lens_rag.training.cluster_head.train_cluster_head` (`lens-rag build-head --train`).

    :param model: a model directory, Hub name or alias.
    :param n_clusters: k.
    :param out: output directory.
    :param seed: k-means seed.
    :param gguf_file: a GGUF file name inside `model` (e.g. `"SmolLM2-135M-Instruct.Q4_1.gguf"`).
    :param progress: show progress bars.
    :returns: the output directory.
    :raises ModelLoadError: if the model cannot be loaded or has no LM head.
    :raises ConfigurationError: if `n_clusters` is out of range.
    """
    if gguf_file is None:
        from lens_rag.training.cluster_head import export_clustered_mlm, is_masked_lm

        if is_masked_lm(model):  # a SPLADE-style MLM: an MLMSparseEncoder directory, not a LENS one
            return export_clustered_mlm(model, n_clusters, out, seed=seed, progress=progress)
    t0 = time.perf_counter()
    lm, tokenizer = load_causal_lm(model, gguf_file)
    logger.info("loaded %s in %.1f s", model, time.perf_counter() - t0)
    head = build_lens_head(lm, n_clusters, seed, progress=progress)
    backbone = lm.base_model
    added = add_marker_tokens(tokenizer, backbone)
    info = {
        "source_model": model,
        "gguf_file": gguf_file,
        "trained": False,
        "warning": UNTRAINED_WARNING,
        "kmeans": {"seed": seed, "iterations": head.iterations, "inertia": head.inertia},
        "vocab_size": int(head.token_to_cluster.shape[0]),
        "marker_tokens_added": added,
    }
    path = save_lens_model(backbone, tokenizer, head, out, info=info)
    logger.warning("wrote an UNTRAINED LENS model to %s — fine-tune it before use", path)
    return path
