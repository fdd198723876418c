"""Tiny randomly initialised llama-family models written as GGUF with llama.cpp's own `gguf` writer,
to test conversion and the mlx provider fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, quants
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

Q = GGMLQuantizationType
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEXT = (
    "We shipped the new onboarding today. Signups doubled in a week and support tickets fell. "
    "I will open with the result, then explain the cause, and end with a question for the reader. "
) * 20
K_QUANT_SCALES = {Q.Q4_K: (0, 2), Q.Q6_K: (208,)}
"""Byte offsets of the float16 scales in a K-quant block; the other bytes may be anything."""


def trained_vocabulary() -> tuple[list[str], list[str]]:
    """Tokens (ids in order) and merges of a byte-level BPE trained on `TEXT`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([TEXT], trainer)
    tokens = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tokenizer.to_str())["model"]["merges"]]
    return tokens, merges


def random_blocks(rng: np.random.Generator, rows: int, columns: int, kind: Q) -> npt.NDArray[np.uint8]:
    """A K-quant tensor of random blocks (the `gguf` package cannot quantize to K-quants), with
    small scales so that the values stay those of a model."""
    block, size = GGML_QUANT_SIZES[kind]
    data = rng.integers(0, 256, (rows, columns // block, size), dtype=np.uint8)
    for offset in K_QUANT_SCALES[kind]:
        data[..., offset : offset + 2] = np.array([0.002], dtype=np.float16).view(np.uint8)
    return data.reshape(rows, -1)


def write_tiny_gguf(
    path: Path,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    architecture: str = "llama",
    pre: str = "smollm",
    quantization: GGMLQuantizationType = Q.F32,
    vocabulary: tuple[list[str], list[str]] | None = None,
) -> None:
    """A GGUF model with random weights, its matrices stored as `quantization` (F32, Q4_0, Q4_1,
    Q8_0, Q4_K or Q6_K), and the trained vocabulary unless another is given."""
    tokens, merges = vocabulary or trained_vocabulary()
    rng = np.random.default_rng(0)
    writer = GGUFWriter(path, architecture)

    def matrix(name: str, rows: int, columns: int) -> None:
        if quantization in K_QUANT_SCALES:
            writer.add_tensor(name, random_blocks(rng, rows, columns, quantization), raw_dtype=quantization)
            return
        values = (rng.standard_normal((rows, columns)) * 0.08).astype(np.float32)
        if quantization == Q.F32:
            writer.add_tensor(name, values)
        else:
            writer.add_tensor(name, quants.quantize(values, quantization), raw_dtype=quantization)

    def ones(name: str) -> None:
        writer.add_tensor(name, np.ones(hidden, dtype=np.float32))

    head_dim, ffn = hidden // heads, hidden * 2
    matrix("token_embd.weight", len(tokens), hidden)
    ones("output_norm.weight")
    for i in range(layers):
        for part, rows, columns in [
            ("attn_q", hidden, hidden),
            ("attn_k", kv_heads * head_dim, hidden),
            ("attn_v", kv_heads * head_dim, hidden),
            ("attn_output", hidden, hidden),
            ("ffn_gate", ffn, hidden),
            ("ffn_up", ffn, hidden),
            ("ffn_down", hidden, ffn),
        ]:
            matrix(f"blk.{i}.{part}.weight", rows, columns)
            if architecture == "qwen2" and part in ("attn_q", "attn_k", "attn_v"):
                writer.add_tensor(f"blk.{i}.{part}.bias", (rng.standard_normal(rows) * 0.08).astype(np.float32))
        ones(f"blk.{i}.attn_norm.weight")
        ones(f"blk.{i}.ffn_norm.weight")
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_context_length(2048)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIAL else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|im_start|>") if "<|im_start|>" in tokens else 0)
    writer.add_eos_token_id(tokens.index("<|im_end|>") if "<|im_end|>" in tokens else 0)
    writer.add_chat_template(CHAT_TEMPLATE)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
