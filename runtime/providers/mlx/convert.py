"""Turn a llama-architecture GGUF file into an mlx-lm model folder, with no torch and no network.

`mx.load` reads GGUF; Q4_1 and Q8_0 tensors come back in MLX's affine layout (weight, scales,
biases). This renames them to mlx-lm's llama names, writes `config.json` (with
`rope_traditional: true`, which matches llama.cpp's permuted Q/K weights, and a per-layer
quantization entry for every tensor whose bit width differs from the rest), and rebuilds
`tokenizer.json` from the GGUF vocabulary and merges with the `tokenizers` library.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, cast

import mlx.core as mx

from runtime.store import file_sha256

GROUP_SIZE = 32
_LAYER = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|scales|biases)$")
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
SOURCE_HASH_FILE = "source.sha256"


class ConversionError(ValueError):
    """The GGUF file cannot be turned into an mlx-lm model; the message says why."""


def mlx_name(gguf_name: str) -> str:
    """The mlx-lm llama parameter name of a GGUF tensor name."""
    if match := _LAYER.match(gguf_name):
        layer, part, kind = match.groups()
        if part not in _LAYER_NAMES:
            raise ConversionError(f"unknown tensor {gguf_name!r}")
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    base, _, kind = gguf_name.rpartition(".")
    if base not in _TOP_NAMES:
        raise ConversionError(f"unknown tensor {gguf_name!r}")
    return f"{_TOP_NAMES[base]}.{kind}"


def _scalar(meta: dict[str, Any], key: str) -> Any:
    value = meta.get(key)
    if value is None:
        raise ConversionError(f"the GGUF file has no {key!r}")
    return value.item() if isinstance(value, mx.array) else value


def _bits(weights: dict[str, mx.array], prefix: str) -> int | None:
    """The bit width of a quantized tensor, from its packed and unpacked sizes."""
    if f"{prefix}.scales" not in weights:
        return None
    packed, scales = weights[f"{prefix}.weight"], weights[f"{prefix}.scales"]
    return int(packed.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE))


def build_config(meta: dict[str, Any], weights: dict[str, mx.array]) -> dict[str, Any]:
    if meta.get("general.architecture") != "llama":
        architecture = meta.get("general.architecture")
        raise ConversionError(f"only llama-architecture GGUF files are supported, not {architecture!r}")
    config: dict[str, Any] = {
        "model_type": "llama",
        "hidden_size": int(_scalar(meta, "llama.embedding_length")),
        "num_hidden_layers": int(_scalar(meta, "llama.block_count")),
        "intermediate_size": int(_scalar(meta, "llama.feed_forward_length")),
        "num_attention_heads": int(_scalar(meta, "llama.attention.head_count")),
        "num_key_value_heads": int(_scalar(meta, "llama.attention.head_count_kv")),
        "rms_norm_eps": float(_scalar(meta, "llama.attention.layer_norm_rms_epsilon")),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "rope_theta": float(_scalar(meta, "llama.rope.freq_base")),
        "rope_traditional": True,
        "max_position_embeddings": int(_scalar(meta, "llama.context_length")),
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "bos_token_id": int(_scalar(meta, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(_scalar(meta, "tokenizer.ggml.eos_token_id")),
    }
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


def build_tokenizer(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`tokenizer.json` (as a dict) and `tokenizer_config.json` for a GPT-2 style BPE vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise ConversionError("only byte-level BPE (gpt2) GGUF tokenizers are supported")
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"].tolist()
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    special = [t for t, kind in zip(tokens, types, strict=True) if kind == 3]  # 3: control tokens
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])

    def token(key: str, default: str | None) -> str | None:
        return tokens[int(_scalar(meta, key))] if key in meta else default

    eos = token("tokenizer.ggml.eos_token_id", None)
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id", None),
        "eos_token": eos,
        "pad_token": token("tokenizer.ggml.padding_token_id", eos),
        "unk_token": token("tokenizer.ggml.unknown_token_id", None),
        "add_bos_token": bool(_scalar(meta, "tokenizer.ggml.add_bos_token"))
        if "tokenizer.ggml.add_bos_token" in meta
        else False,
        "chat_template": meta.get("tokenizer.chat_template"),
        "model_max_length": int(_scalar(meta, "llama.context_length")),
        "clean_up_tokenization_spaces": False,
    }
    return json.loads(tokenizer.to_str()), tokenizer_config


def convert(gguf: Path, out: Path) -> None:
    """Write the mlx-lm folder for `gguf` to `out`, atomically (a crash leaves no half folder)."""
    weights, meta = cast(tuple[dict[str, mx.array], dict[str, Any]], mx.load(str(gguf), return_metadata=True))
    renamed = {mlx_name(name): array for name, array in weights.items()}
    config = build_config(meta, renamed)
    tokenizer, tokenizer_config = build_tokenizer(meta)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    mx.save_safetensors(str(staging / "model.safetensors"), renamed, metadata={"format": "mlx"})
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    (staging / "tokenizer.json").write_text(json.dumps(tokenizer))
    (staging / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (staging / SOURCE_HASH_FILE).write_text(file_sha256(gguf) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def ensure_converted(gguf: Path, out: Path) -> Path:
    """The mlx-lm folder for `gguf`, converting it unless `out` holds a conversion of the same file."""
    marker = out / SOURCE_HASH_FILE
    if not (marker.exists() and marker.read_text().strip() == file_sha256(gguf)):
        convert(gguf, out)
    return out
