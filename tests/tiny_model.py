"""A tiny randomly initialised llama model written as GGUF, to test conversion and the mlx provider fast."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEXT = (
    "We shipped the new onboarding today. Signups doubled in a week and support tickets fell. "
    "I will open with the result, then explain the cause, and end with a question for the reader. "
) * 20


def write_tiny_gguf(path: Path, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2) -> None:
    """A llama GGUF with a trained byte-level BPE vocabulary and random float32 weights."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([TEXT], trainer)
    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [" ".join(pair) for pair in tokenizer.model.get_merges()] if hasattr(tokenizer.model, "get_merges") else []
    if not merges:
        import json

        merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tokenizer.to_str())["model"]["merges"]]
    mx.random.seed(0)
    ffn = hidden * 2
    head_dim = hidden // heads

    def rand(*shape: int) -> mx.array:
        return mx.random.normal(shape) * 0.08

    weights = {"token_embd.weight": rand(len(tokens), hidden), "output_norm.weight": mx.ones((hidden,))}
    for i in range(layers):
        weights |= {
            f"blk.{i}.attn_q.weight": rand(hidden, hidden),
            f"blk.{i}.attn_k.weight": rand(kv_heads * head_dim, hidden),
            f"blk.{i}.attn_v.weight": rand(kv_heads * head_dim, hidden),
            f"blk.{i}.attn_output.weight": rand(hidden, hidden),
            f"blk.{i}.ffn_gate.weight": rand(ffn, hidden),
            f"blk.{i}.ffn_up.weight": rand(ffn, hidden),
            f"blk.{i}.ffn_down.weight": rand(hidden, ffn),
            f"blk.{i}.attn_norm.weight": mx.ones((hidden,)),
            f"blk.{i}.ffn_norm.weight": mx.ones((hidden,)),
        }
    u32 = mx.uint32
    metadata = {
        "general.architecture": "llama",
        "llama.embedding_length": mx.array(hidden, dtype=u32),
        "llama.block_count": mx.array(layers, dtype=u32),
        "llama.feed_forward_length": mx.array(ffn, dtype=u32),
        "llama.attention.head_count": mx.array(heads, dtype=u32),
        "llama.attention.head_count_kv": mx.array(kv_heads, dtype=u32),
        "llama.attention.layer_norm_rms_epsilon": mx.array(1e-5, dtype=mx.float32),
        "llama.rope.freq_base": mx.array(10000.0, dtype=mx.float32),
        "llama.context_length": mx.array(2048, dtype=u32),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": mx.array([3 if t in SPECIAL else 1 for t in tokens], dtype=mx.int32),
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": mx.array(tokens.index("<|im_start|>"), dtype=u32),
        "tokenizer.ggml.eos_token_id": mx.array(tokens.index("<|im_end|>"), dtype=u32),
        "tokenizer.chat_template": CHAT_TEMPLATE,
    }
    mx.save_gguf(str(path), weights, metadata)  # type: ignore[arg-type]  # MLX also takes arrays as values
