"""GGUF files as people keep them: llama.cpp's quantizations and the pre-tokenizers of SmolLM2,
Llama 3 and Qwen2, converted for mlx-lm. The files are written here with llama.cpp's `gguf` writer."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from gguf import GGUFReader, quants
from mlx_lm import load
from tokenizers import Tokenizer

import runtime.providers.local  # noqa: F401  (loads OpenBLAS before mlx.core)
from runtime.providers.calls import ScoreCall
from runtime.providers.local.convert import ConversionError, convert, mlx_name, read
from runtime.providers.local.provider import LocalProvider, packaged_gguf
from tests.runtime.providers.test_local import CHAT, encoded, reference_logprobs
from tests.tiny_model import SPECIAL, Q, write_tiny_gguf

pytestmark = pytest.mark.anyio

BYTES = [chr(c) for c in range(ord("!"), ord("~") + 1)] + ["Ġ"]  # printable ASCII and the byte-level space
MERGES = ["2 0", "20 2", "202 4", "Ġ D", "ĠD O", "' T"]
TOKENS = [*SPECIAL, *BYTES, "20", "202", "2024", "ĠD", "ĠDO", "'T", "ĠDON"]  # ĠDON has no merge of its own
TEXT = "2024 DON'T"
SPLITS = {
    "gpt-2": ["2024", "ĠDO", "N", "'", "T"],  # case-sensitive contractions: 'T is punctuation, then a word
    "smollm": ["2", "0", "2", "4", "ĠDO", "N", "'", "T"],  # digits one by one
    "llama-bpe": ["202", "4", "ĠDON", "'T"],  # digits in threes; a word in the vocabulary is taken whole
    "qwen2": ["2", "0", "2", "4", "ĠDO", "N", "'T"],  # digits one by one, contractions in any case
}


def converted(tmp_path: Path, name: str = "m", **kwargs: object) -> Path:
    gguf = tmp_path / f"{name}.gguf"
    write_tiny_gguf(gguf, **kwargs)  # type: ignore[arg-type]
    convert(gguf, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("pre", SPLITS)
def test_each_pre_tokenizer_splits_text_as_its_model_family_does(tmp_path: Path, pre: str) -> None:
    folder = converted(tmp_path, pre=pre, vocabulary=(TOKENS, MERGES))
    tokenizer = load(str(folder))[1]
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    assert [TOKENS[i] for i in ids] == SPLITS[pre]
    assert tokenizer.decode(ids) == TEXT


def test_an_unknown_pre_tokenizer_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"'deepseek-llm' \(tokenizer.ggml.pre\) is not supported.*llama-bpe"):
        converted(tmp_path, pre="deepseek-llm")


def test_quantized_blocks_are_repacked_exactly_as_mlx_reads_them(tmp_path: Path) -> None:
    """MLX's own GGUF reader covers Q4_0, Q4_1 and Q8_0: the conversion gives the same arrays, bit
    for bit, for the packaged model (Q4_1, Q8_0, F32) and a Q4_0 file."""
    q4_0 = tmp_path / "q4_0.gguf"
    write_tiny_gguf(q4_0, quantization=Q.Q4_0)
    for gguf in (packaged_gguf("smollm2-135m"), q4_0):
        ours = read(gguf)[0]
        theirs = mx.load(str(gguf))
        assert isinstance(theirs, dict) and len(ours) == len(theirs)
        for name, array in theirs.items():
            base, _, kind = name.rpartition(".")
            ours_name = mlx_name(f"{base}.weight").removesuffix("weight") + kind if kind != "weight" else mlx_name(name)
            assert ours[ours_name].dtype == array.dtype and mx.array_equal(ours[ours_name], array), name


def test_a_k_quant_file_loads_with_the_values_llama_cpp_decodes(tmp_path: Path) -> None:
    """Q4_K and Q6_K, the matrices of a Q4_K_M file: quantized again for MLX at 4 and 6 bits, each
    value within one MLX quantization step of llama.cpp's own dequantization (MLX keeps
    a group's larger edge exact, so the other edge may be clipped by up to a step)."""
    for kind, bits in ((Q.Q4_K, 4), (Q.Q6_K, 6)):
        folder = converted(tmp_path, kind.name, quantization=kind, hidden=256)
        config = json.loads((folder / "config.json").read_text())
        assert config["quantization"]["bits"] == bits
        model = load(str(folder))[0]
        layer = model.model.layers[0].mlp.down_proj
        ours = mx.dequantize(layer.weight, layer.scales, layer.biases, group_size=32, bits=bits)
        tensors = GGUFReader(tmp_path / f"{kind.name}.gguf").tensors
        reference = quants.dequantize(next(t for t in tensors if t.name == "blk.0.ffn_down.weight").data, kind)
        step = np.abs(np.repeat(np.array(layer.scales.astype(mx.float32)), 32, axis=-1))
        rounding = np.abs(reference) * 2**-10 + 1e-3  # float16's
        assert np.all(np.abs(np.array(ours.astype(mx.float32)) - reference) <= step + rounding)
        logits = model(mx.array([[5, 6, 7]]))
        assert bool(mx.all(mx.isfinite(logits)).item())


def test_a_type_not_read_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"'token_embd.weight' is TQ1_0, which is not read here"):
        converted(tmp_path, quantization=Q.TQ1_0, hidden=256)


async def test_a_qwen2_file_scores_as_mlx_lm_computes_it(tmp_path: Path) -> None:
    """Qwen2: q/k/v biases, RoPE on unpermuted weights, its own pre-tokenizer; the provider's
    scores are those of mlx-lm's forward pass over the converted folder."""
    folder = converted(tmp_path, architecture="qwen2", pre="qwen2")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["rope_traditional"] is False
    assert Tokenizer.from_file(str(folder / "tokenizer.json")).normalizer is not None  # NFC, as Qwen2's
    provider = LocalProvider(f"mlx://{folder}", str(folder), "qwen")
    call = ScoreCall(messages=CHAT, prefix="Plan: open with the result.\n", target="We shipped 2024 features.")
    got = await provider.score(call)
    await provider.aclose()
    context, target = encoded(load(str(folder))[1], call)
    assert got.logprobs == pytest.approx(reference_logprobs(folder, context, target), abs=1e-4)
