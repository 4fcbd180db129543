#!/usr/bin/env python3
"""Writes fuzz/corpus/gguf/arch-*.gguf: tiny GGUFs of each architecture export reads besides
llama (qwen2 with q/k/v biases, qwen3 with q/k norms and a key_length of its own, phi3 with
fused attn_qkv and gate+up, llama with rope_freqs, and gemma3 with q/k norms, post norms, a
window on every other layer and add_space_prefix false), so that the fuzzer starts inside
every branch of the reader. The vocabulary is that of tests/fixtures/tiny-qwen2.gguf (written
by llama.cpp's converter); the tensors are made up, dim 8.

Run from the repository root with the gguf package of tests/fixtures/requirements.txt:
    /tmp/benchvenv/bin/python fuzz/make_arch_seeds.py
"""
import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType

DIM, FF, L, NH, NKV = 8, 16, 1, 2, 1


def copy_vocab(w, src):
    r = GGUFReader(src)
    for f in r.fields.values():
        if not f.name.startswith("tokenizer."):
            continue
        if f.types[0] == GGUFValueType.ARRAY:
            sub = f.types[1]
            vals = [f.parts[i] for i in f.data]
            if sub == GGUFValueType.STRING:
                w.add_array(f.name, [bytes(v).decode("utf-8", "surrogateescape") for v in vals])
            else:
                w.add_array(f.name, [v[0].item() for v in vals])
        elif f.types[0] == GGUFValueType.STRING:
            w.add_string(f.name, bytes(f.parts[f.data[0]]).decode())
        elif f.types[0] == GGUFValueType.UINT32:
            w.add_uint32(f.name, int(f.parts[f.data[0]][0]))
        elif f.types[0] == GGUFValueType.BOOL:
            w.add_bool(f.name, bool(f.parts[f.data[0]][0]))
    return len(r.fields["tokenizer.ggml.tokens"].data)


def t(*shape, k=0):  # numpy shape is ggml's reversed
    n = int(np.prod(shape))
    return ((np.arange(n, dtype=np.float32) * 7 + k) % 13 - 6).reshape(shape) / 8


def write(arch, path, hd, extra):
    w = GGUFWriter(path, arch)
    vocab = copy_vocab(w, "tests/fixtures/tiny-qwen2.gguf")
    w.add_context_length(32)
    w.add_embedding_length(DIM)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    if hd != DIM // NH:
        w.add_key_length(hd)
        w.add_value_length(hd)
    if arch in ("phi3", "gemma3"):
        w.add_sliding_window(4)
    if arch == "gemma3":  # every other layer global, the windowed ones with their own RoPE base
        w.add_uint32("gemma3.attention.sliding_window_pattern", 2)
        w.add_float32("gemma3.rope.freq_base_swa", 1000.0)
        w.add_bool("tokenizer.ggml.add_space_prefix", False)
    w.add_tensor("token_embd.weight", t(vocab, DIM))
    w.add_tensor("output_norm.weight", t(DIM, k=1))
    qd, kvd = NH * hd, NKV * hd
    for l in range(L):
        b = f"blk.{l}."
        w.add_tensor(b + "attn_norm.weight", t(DIM, k=2))
        w.add_tensor(b + "ffn_norm.weight", t(DIM, k=3))
        if arch == "phi3":
            w.add_tensor(b + "attn_qkv.weight", t(qd + 2 * kvd, DIM, k=4))
            w.add_tensor(b + "ffn_up.weight", t(2 * FF, DIM, k=5))
        else:
            w.add_tensor(b + "attn_q.weight", t(qd, DIM, k=4))
            w.add_tensor(b + "attn_k.weight", t(kvd, DIM, k=5))
            w.add_tensor(b + "attn_v.weight", t(kvd, DIM, k=6))
            w.add_tensor(b + "ffn_gate.weight", t(FF, DIM, k=7))
            w.add_tensor(b + "ffn_up.weight", t(FF, DIM, k=8))
        w.add_tensor(b + "attn_output.weight", t(DIM, qd, k=9))
        w.add_tensor(b + "ffn_down.weight", t(DIM, FF, k=10))
        extra(w, b, qd, kvd, hd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def biases(w, b, qd, kvd, hd):
    for name, n in (("attn_q", qd), ("attn_k", kvd), ("attn_v", kvd)):
        w.add_tensor(b + name + ".bias", t(n, k=11))


def norms(w, b, qd, kvd, hd):
    w.add_tensor(b + "attn_q_norm.weight", t(hd, k=12))
    w.add_tensor(b + "attn_k_norm.weight", t(hd, k=13))


def gemma3(w, b, qd, kvd, hd):
    norms(w, b, qd, kvd, hd)
    w.add_tensor(b + "post_attention_norm.weight", t(DIM, k=14))
    w.add_tensor(b + "post_ffw_norm.weight", t(DIM, k=15))


def none(w, b, qd, kvd, hd):
    pass


def rope_freqs(w, b, qd, kvd, hd):
    if b == "blk.0.":
        w.add_tensor("rope_freqs.weight", np.array([1.0, 8.0][: hd // 2], dtype=np.float32))


write("qwen2", "fuzz/corpus/gguf/arch-qwen2.gguf", 4, biases)
write("qwen3", "fuzz/corpus/gguf/arch-qwen3.gguf", 6, norms)
write("phi3", "fuzz/corpus/gguf/arch-phi3.gguf", 4, none)
write("llama", "fuzz/corpus/gguf/arch-llama-rope-freqs.gguf", 4, rope_freqs)
write("gemma3", "fuzz/corpus/gguf/arch-gemma3.gguf", 4, gemma3)
