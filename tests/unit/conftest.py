"""Shared unit-test fixtures."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------------
# Encoder fixtures (owner: encoders). Tiny random models and tokenizers built offline in milliseconds.
# ---------------------------------------------------------------------------------------------------
from pathlib import Path

import pytest
import torch

ENC_WORDS = (
    "given a query retrieve relevant passages that answer the , . ? what is causes scurvy vitamin c lack of "
    "aspirin heart attack risk lowers alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
    "omicron pi rho sigma tau upsilon phi chi psi omega one two three four five six seven eight nine ten"
).split()


def _enc_word_tokenizer(special_markers: bool = True):
    """A WordLevel fast tokenizer with <s>/</s>/<pad>/<unk> and the LENS marker tokens."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(ENC_WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if special_markers:
        fast.add_tokens(
            [AddedToken(t, special=True, normalized=False) for t in ("<instruct>", "<query>", "<response>")],
            special_tokens=True,
        )
    return fast


@pytest.fixture(scope="session")
def enc_tokenizer():
    return _enc_word_tokenizer()


def _tiny_decoder_config(kind: str, vocab_size: int, tie: bool = False):
    from transformers import LlamaConfig, MistralConfig

    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
        tie_word_embeddings=tie,
    )
    if kind == "mistral":
        return MistralConfig(sliding_window=None, **common)
    return LlamaConfig(**common)


@pytest.fixture(scope="session")
def released_lens_dir(tmp_path_factory, enc_tokenizer) -> Path:
    """A tiny random `MistralModel` + `lm_head.pth` (tensor state dict): the released LENS layout."""
    from transformers import MistralModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("lens_released")
    model = MistralModel(_tiny_decoder_config("mistral", len(enc_tokenizer)))
    model.save_pretrained(d)
    enc_tokenizer.save_pretrained(d)
    torch.save({"weight": torch.randn(16, 32)}, d / "lm_head.pth")
    return d


@pytest.fixture()
def released_lens_copy(tmp_path, released_lens_dir) -> Path:
    """A private copy of the released layout (tests that convert the head write into it)."""
    import shutil

    d = tmp_path / "lens"
    shutil.copytree(released_lens_dir, d)
    (d / "lens_head.safetensors").unlink(missing_ok=True)
    return d


@pytest.fixture(scope="session")
def tiny_causal_lm_dir(tmp_path_factory) -> Path:
    """A tiny random `LlamaForCausalLM` (untied head) with a tokenizer *without* LENS markers."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    tok = _enc_word_tokenizer(special_markers=False)
    d = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(_tiny_decoder_config("llama", len(tok))).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_backbone_only_dir(tmp_path_factory) -> Path:
    """A tiny `MistralModel` saved without any LM head."""
    from transformers import MistralModel

    tok = _enc_word_tokenizer(special_markers=False)
    d = tmp_path_factory.mktemp("tiny_backbone")
    MistralModel(_tiny_decoder_config("mistral", len(tok))).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory) -> Path:
    """A tiny random `BertForMaskedLM` with a WordPiece tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    torch.manual_seed(2)
    d = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(ENC_WORDS))]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 ignores `vocab_file` here (every word became [UNK]); pass the vocabulary itself.
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    BertForMaskedLM(config).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_decoder_config():
    """Factory: `tiny_decoder_config(kind, vocab_size)` for kind in {"mistral", "llama"}."""
    return _tiny_decoder_config
