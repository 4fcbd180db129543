"""scripts/bench_gguf.py: a random Llama model as an F32 GGUF, for side-by-side benchmarks.

    python scripts/bench_gguf.py SHAPE VOCAB.gguf OUT.gguf

SHAPE is one of export --random's shapes (stories15M, stories42M, stories110M, tinyllama-1.1B,
llama3.2-1B), with the same hyperparameters (convert/synth.c; llama3.2-1B with the 32000-token
vocabulary below). The vocabulary (tokens, scores, types) is
copied from VOCAB.gguf, llama.cpp's vocabulary-only file of the Llama 2 tokenizer
(ggml-vocab-llama-spm.gguf, 32000 tokens). Weights are N(0, 0.02), norms 1, the classifier is
shared with the embedding (no output.weight). llama.cpp reads this file (and llama-quantize
converts it to F16, BF16 or Q8_0); `./export FILE.gguf FILE.slm` imports the same weights, bit
for bit, so both programs run the same model. Only scripts/bench-llamacpp.sh uses this; the
versions are pinned in scripts/requirements-bench.txt.
"""
import sys

import numpy as np
import gguf

SHAPES = {  # dim, hidden, layers, heads, kv_heads, context, RoPE base
    "stories15M": (288, 768, 6, 6, 6, 256, 10000.0),
    "stories42M": (512, 1376, 8, 8, 8, 1024, 10000.0),
    "stories110M": (768, 2048, 12, 12, 12, 1024, 10000.0),
    "tinyllama-1.1B": (2048, 5632, 22, 32, 4, 2048, 10000.0),
    # Llama 3.2 1B's transformer, with VOCAB's vocabulary (not Llama 3's 128256 tokens: the
    # classifier runs once per prompt, so prompt speed hardly depends on it)
    "llama3.2-1B": (2048, 8192, 16, 32, 8, 4096, 500000.0),
}


def field(reader, name):
    f = reader.fields[name]
    return [f.parts[i] for i in f.data]


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in SHAPES:
        sys.exit(f"usage: bench_gguf.py {{{','.join(SHAPES)}}} VOCAB.gguf OUT.gguf")
    shape, vocab_path, out = sys.argv[1:]
    dim, hidden, layers, heads, kv_heads, ctx, rope_base = SHAPES[shape]
    head_dim = dim // heads

    vocab = gguf.GGUFReader(vocab_path)
    tokens = [bytes(p).decode("utf-8") for p in field(vocab, "tokenizer.ggml.tokens")]
    scores = [float(p[0]) for p in field(vocab, "tokenizer.ggml.scores")]
    types = [int(p[0]) for p in field(vocab, "tokenizer.ggml.token_type")]
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(out, "llama")
    w.add_name(f"random {shape}")
    w.add_context_length(ctx)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(hidden)
    w.add_block_count(layers)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(rope_base)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    rng = np.random.default_rng(1234)

    def mat(rows, cols):  # (out, in): GGUF stores the dimensions reversed, as ggml's ne
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)

    ones = lambda n: np.ones(n, dtype=np.float32)
    w.add_tensor("token_embd.weight", mat(n_vocab, dim))
    for l in range(layers):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", ones(dim))
        w.add_tensor(p + "attn_q.weight", mat(heads * head_dim, dim))
        w.add_tensor(p + "attn_k.weight", mat(kv_heads * head_dim, dim))
        w.add_tensor(p + "attn_v.weight", mat(kv_heads * head_dim, dim))
        w.add_tensor(p + "attn_output.weight", mat(dim, heads * head_dim))
        w.add_tensor(p + "ffn_norm.weight", ones(dim))
        w.add_tensor(p + "ffn_gate.weight", mat(hidden, dim))
        w.add_tensor(p + "ffn_up.weight", mat(hidden, dim))
        w.add_tensor(p + "ffn_down.weight", mat(dim, hidden))
    w.add_tensor("output_norm.weight", ones(dim))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
