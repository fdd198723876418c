"""Turn a llama-family GGUF file into an mlx-lm model folder, with no torch and no network.

The file is read with `gguf`, llama.cpp's own reader. Tensors become mlx-lm's affine-quantized
layout (weight, scales, biases in groups of 32):
- Q4_0, Q4_1 and Q8_0 blocks are repacked exactly: each block's scale and offset become the
  group's scale and bias;
- K-quants (Q2_K to Q6_K), Q5_0, Q5_1 and IQ4_NL/IQ4_XS are dequantized with `gguf`'s numpy code
  and quantized again with `mx.quantize`, at the bit width of `REQUANTIZED`;
- F32, F16 and BF16 stay floats.
Any other type is refused, by name. `config.json` gets a per-layer quantization entry for every
tensor whose bit width differs from the rest. Llama files carry llama.cpp's permuted Q/K weights,
hence `rope_traditional: true`; Qwen2 files are not permuted.

`tokenizer.json` is rebuilt from the file's vocabulary and merges with the `tokenizers` library,
with the pre-tokenizer that the file's `tokenizer.ggml.pre` names (`PRE_TOKENIZERS`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import numpy.typing as npt
from gguf import GGMLQuantizationType, GGUFReader, ReaderTensor, quants

from runtime.files import link_refused, make_private_dir
from runtime.store import file_sha256

GROUP_SIZE = 32
SOURCE_HASH_FILE = "source.sha256"

Q = GGMLQuantizationType
FLOATS = {Q.F32, Q.F16, Q.BF16}
EXACT = {Q.Q4_0: 4, Q.Q4_1: 4, Q.Q8_0: 8}
"""Block types whose values are `scale * q + offset` in blocks of 32: repacked without loss."""
REQUANTIZED = {
    Q.Q2_K: 3,
    Q.Q3_K: 4,
    Q.Q4_K: 4,
    Q.Q5_K: 5,
    Q.Q6_K: 6,
    Q.Q5_0: 5,
    Q.Q5_1: 5,
    Q.IQ4_NL: 4,
    Q.IQ4_XS: 4,
}
"""Types dequantized and quantized again, with the MLX bit width that keeps their precision."""

ARCHITECTURES = {"llama": True, "qwen2": False}
"""The architectures read, and whether llama.cpp permuted their Q/K weights (traditional RoPE)."""

_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_LLAMA3 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PRE_TOKENIZERS = {
    "gpt-2": "byte-level words (GPT-2)",
    "smollm": "digits one by one, then byte-level words (SmolLM, SmolLM2)",
    "llama-bpe": "Llama 3's words, digits in threes (Llama 3, 3.1, 3.2)",
    "qwen2": "Qwen2's words, digits one by one (Qwen2, Qwen2.5)",
}
"""The `tokenizer.ggml.pre` values read, with what each splits text into before BPE."""

_LAYER = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


class ConversionError(ValueError):
    """The GGUF file cannot be turned into an mlx-lm model; the message says why."""


def mlx_name(gguf_name: str) -> str:
    """The mlx-lm parameter name of a GGUF tensor name."""
    if gguf_name == "rope_freqs.weight":
        raise ConversionError("Llama 3.1-style RoPE scaling (the rope_freqs tensor) is not supported")
    if match := _LAYER.match(gguf_name):
        layer, part, kind = match.groups()
        if part not in _LAYER_NAMES:
            raise ConversionError(f"unknown tensor {gguf_name!r}")
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    base, _, kind = gguf_name.rpartition(".")
    if base not in _TOP_NAMES:
        raise ConversionError(f"unknown tensor {gguf_name!r}")
    return f"{_TOP_NAMES[base]}.{kind}"


def _pack(q: npt.NDArray[np.uint8], bits: int) -> mx.array:
    """Unsigned `bits`-wide values, (rows, columns), in MLX's layout: little-endian in uint32 words."""
    if bits == 4:
        q = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    return mx.array(np.ascontiguousarray(q).view(np.uint32))


def _repacked(data: npt.NDArray[np.uint8], kind: GGMLQuantizationType) -> tuple[mx.array, mx.array, mx.array]:
    """Weight, scales and biases of a Q4_0, Q4_1 or Q8_0 tensor, exactly as its blocks hold them."""
    rows = data.shape[0]
    blocks = data.reshape(rows, -1, 34 if kind == Q.Q8_0 else 18 if kind == Q.Q4_0 else 20)
    scale = blocks[..., 0:2].copy().view(np.float16)[..., 0]
    if kind == Q.Q8_0:
        q = (blocks[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        bias = scale * np.float16(-128)
    else:
        nibbles = blocks[..., 4:] if kind == Q.Q4_1 else blocks[..., 2:]
        q = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1)  # low nibbles hold the first 16 values
        bias = blocks[..., 2:4].copy().view(np.float16)[..., 0] if kind == Q.Q4_1 else scale * np.float16(-8)
    return _pack(q.reshape(rows, -1), EXACT[kind]), mx.array(scale), mx.array(bias)


def _tensors(tensor: ReaderTensor) -> dict[str, mx.array]:
    """The mlx-lm arrays of one GGUF tensor: its weight, and its scales and biases if quantized."""
    name, kind, data = mlx_name(tensor.name), tensor.tensor_type, tensor.data
    if kind in (Q.F32, Q.F16):
        return {name: mx.array(np.asarray(data))}
    if kind == Q.BF16:
        return {name: mx.array(quants.dequantize(data, kind)).astype(mx.bfloat16)}
    if kind in EXACT:
        weight, scales, biases = _repacked(np.asarray(data), kind)
    elif kind in REQUANTIZED:
        values = mx.array(quants.dequantize(data, kind)).astype(mx.float16)
        weight, scales, biases = mx.quantize(values, group_size=GROUP_SIZE, bits=REQUANTIZED[kind])
    else:
        readable = ", ".join(t.name for t in (*FLOATS, *EXACT, *REQUANTIZED))
        raise ConversionError(f"tensor {tensor.name!r} is {kind.name}, which is not read here (read: {readable})")
    prefix = name.removesuffix(".weight")
    return {name: weight, f"{prefix}.scales": scales, f"{prefix}.biases": biases}


def _bits(weights: dict[str, mx.array], prefix: str) -> int | None:
    """The bit width of a quantized tensor, from its packed and unpacked sizes."""
    if f"{prefix}.scales" not in weights:
        return None
    packed, scales = weights[f"{prefix}.weight"], weights[f"{prefix}.scales"]
    return int(packed.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE))


def _value(meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise ConversionError(f"the GGUF file has no {key!r}")
    return meta[key]


def build_config(meta: dict[str, Any], weights: dict[str, mx.array]) -> dict[str, Any]:
    """mlx-lm's `config.json` for the file's metadata and converted weights."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise ConversionError(f"architecture {arch!r} is not supported (supported: {', '.join(ARCHITECTURES)})")
    config: dict[str, Any] = {
        "model_type": arch,
        "hidden_size": int(_value(meta, f"{arch}.embedding_length")),
        "num_hidden_layers": int(_value(meta, f"{arch}.block_count")),
        "intermediate_size": int(_value(meta, f"{arch}.feed_forward_length")),
        "num_attention_heads": int(_value(meta, f"{arch}.attention.head_count")),
        "num_key_value_heads": int(_value(meta, f"{arch}.attention.head_count_kv")),
        "rms_norm_eps": float(_value(meta, f"{arch}.attention.layer_norm_rms_epsilon")),
        "vocab_size": len(_value(meta, "tokenizer.ggml.tokens")),
        "rope_theta": float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        "rope_traditional": ARCHITECTURES[arch],
        "max_position_embeddings": int(_value(meta, f"{arch}.context_length")),
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": int(_value(meta, "tokenizer.ggml.eos_token_id")),
    }
    if f"{arch}.attention.key_length" in meta:
        config["head_dim"] = int(meta[f"{arch}.attention.key_length"])
    prefixes = [name.removesuffix(".weight") for name in weights if name.endswith(".weight")]
    quantized = {p: bits for p in prefixes if (bits := _bits(weights, p)) is not None}
    if quantized:
        common = max(set(quantized.values()), key=list(quantized.values()).count)
        quantization: dict[str, Any] = {"group_size": GROUP_SIZE, "bits": common}
        for prefix, bits in quantized.items():
            if bits != common:
                quantization[prefix] = {"group_size": GROUP_SIZE, "bits": bits}
        config["quantization"] = quantization
    return config


def _pre_tokenizer(pre: str) -> tuple[Any, Any, bool]:
    """The pre-tokenizer and normalizer for `tokenizer.ggml.pre`, and whether BPE ignores merges."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    def split(pattern: str) -> Any:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre == "gpt-2":
        return byte_level, None, False
    if pre == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]), None, False
    if pre == "llama-bpe":
        return split(_LLAMA3), None, True
    if pre == "qwen2":
        return split(_QWEN2), normalizers.NFC(), False
    readable = "; ".join(f"{name}: {what}" for name, what in PRE_TOKENIZERS.items())
    raise ConversionError(f"pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported (supported: {readable})")


def build_tokenizer(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`tokenizer.json` (as a dict) and `tokenizer_config.json` for a GPT-2 style BPE vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ConversionError(f"tokenizer model {model!r} is not supported: only byte-level BPE ('gpt2') is read")
    pre_tokenizer, normalizer, ignore_merges = _pre_tokenizer(str(_value(meta, "tokenizer.ggml.pre")))
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=ignore_merges))
    tokenizer.pre_tokenizer = pre_tokenizer
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.decoder = decoders.ByteLevel()
    types = meta["tokenizer.ggml.token_type"]
    special = [t for t, kind in zip(tokens, types, strict=True) if kind == 3]  # 3: control tokens
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])

    def token(key: str, default: str | None) -> str | None:
        return tokens[int(meta[key])] if key in meta else default

    eos = token("tokenizer.ggml.eos_token_id", None)
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id", None),
        "eos_token": eos,
        "pad_token": token("tokenizer.ggml.padding_token_id", eos),
        "unk_token": token("tokenizer.ggml.unknown_token_id", None),
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "chat_template": meta.get("tokenizer.chat_template"),
        "model_max_length": int(_value(meta, f"{meta['general.architecture']}.context_length")),
        "clean_up_tokenization_spaces": False,
    }
    return json.loads(tokenizer.to_str()), tokenizer_config


def read(gguf: Path) -> tuple[dict[str, mx.array], dict[str, Any]]:
    """The mlx-lm weights and the metadata of a GGUF file."""
    try:
        reader = GGUFReader(gguf)
    except (ValueError, OSError) as exc:
        raise ConversionError(f"{gguf} is not a readable GGUF file: {exc}") from exc
    meta = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}
    weights: dict[str, mx.array] = {}
    for tensor in reader.tensors:
        weights |= _tensors(tensor)
    return weights, meta


def convert(gguf: Path, out: Path) -> None:
    """Write the mlx-lm folder for `gguf` to `out`, atomically (a crash leaves no half folder)."""
    weights, meta = read(gguf)
    config = build_config(meta, weights)
    tokenizer, tokenizer_config = build_tokenizer(meta)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    mx.save_safetensors(str(staging / "model.safetensors"), weights, metadata={"format": "mlx"})
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    (staging / "tokenizer.json").write_text(json.dumps(tokenizer))
    (staging / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (staging / SOURCE_HASH_FILE).write_text(file_sha256(gguf) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def ensure_converted(gguf: Path, out: Path) -> Path:
    """The mlx-lm folder for `gguf`, converting it unless `out` holds a conversion of the same file.
    `out` lives in the data dir: a link there (or at its parent) is refused, never written through."""
    make_private_dir(out.parent)
    if out.is_symlink():
        raise link_refused(out)
    marker = out / SOURCE_HASH_FILE
    if not (marker.exists() and marker.read_text().strip() == file_sha256(gguf)):
        convert(gguf, out)
    return out
