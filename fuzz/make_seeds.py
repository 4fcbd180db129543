#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus (small valid inputs of each format).

Run from the repository root: python3 fuzz/make_seeds.py. Needs only the standard library.
The other seeds are copies or cuts of tests/fixtures (see fuzz/README.md)."""
import json, os, struct

OUT = "fuzz/corpus"
# a tiny model: dim 8, hidden 16, 1 layer, 2 heads of 4, 1 kv head, seq_len 16
DIM, HID, L, NH, NKV, HD, SEQ = 8, 16, 1, 2, 1, 4, 16
PIECES = [("<unk>", 2), ("<s>", 3), ("</s>", 3), ("<0x41>", 6), ("<0x0A>", 6), (" a", 1),
          ("b", 1), (" ab", 1)]
V = len(PIECES)


def put(name, data):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def floats(n, k=0):
    return struct.pack(f"<{n}f", *[((i * 7 + k) % 13 - 6) / 8 for i in range(n)])


def tok_section():
    out = struct.pack("<II", V, max(len(p) for p, _ in PIECES))
    for i, (p, t) in enumerate(PIECES):
        b = p.encode()
        out += struct.pack("<fIB", -float(i), len(b), t) + b
    return out


def q8(rows, cols):
    g = (cols + 31) // 32
    return bytes((i * 5) % 256 for i in range(rows * g * 32)) + struct.pack("<H", 0x3C00) * (rows * g)


def slm(dtype, shared, tokenizer_only=False):
    tok = tok_section()
    qd, kvd = NH * HD, NKV * HD
    shapes = [(V, DIM), (L, DIM), (L * qd, DIM), (L * kvd, DIM), (L * kvd, DIM), (L * DIM, qd),
              (L, DIM), (L * HID, DIM), (L * DIM, HID), (L * HID, DIM), (1, DIM), (V, DIM)]
    norms = {1, 6, 10}
    types = [0 if i in norms else dtype for i in range(12)]
    hdr = b"SRCHLGHT" + struct.pack("<II8iff2I2i2I", 1, 256, DIM, HID, L, NH, NKV, HD, V, SEQ,
                                    10000.0, 1e-5, 1 if shared else 0, dtype, 1, 2, len(tok),
                                    0 if tokenizer_only else 12)
    hdr += bytes(types) + bytes(4)
    hdr += bytes(256 - len(hdr))
    body = hdr + tok
    if tokenizer_only:
        return body
    for i, (r, c) in enumerate(shapes):
        if i == 11 and shared:
            continue
        body += bytes(-len(body) % 64)
        body += q8(r, c) if types[i] == 3 else floats(r * c, i) if types[i] == 0 \
            else struct.pack(f"<{r * c}H", *[0x3C00 + (j % 64) for j in range(r * c)])
    return body


def llama2c(shared):
    w = struct.pack("<7i", DIM, HID, L, NH, NKV, V if shared else -V, SEQ)
    qd, kvd = NH * HD, NKV * HD
    n = [V * DIM, L * DIM, L * qd * DIM, L * kvd * DIM, L * kvd * DIM, L * DIM * qd, L * DIM,
         L * HID * DIM, L * DIM * HID, L * HID * DIM, DIM, SEQ * HD // 2, SEQ * HD // 2]
    if not shared:
        n.append(V * DIM)
    return w + b"".join(floats(k, i) for i, k in enumerate(n))


def tokenizer_bin():
    out = struct.pack("<I", max(len(p) for p, _ in PIECES))
    for i, (p, _) in enumerate(PIECES):
        b = p.encode()
        out += struct.pack("<fi", -float(i), len(b)) + b
    return out


def safetensors():
    hdr, data = {"__metadata__": {"format": "pt"}}, b""
    for name, dt, shape, el in [("a.weight", "F32", [2, 3], 4), ("b.weight", "F16", [4], 2),
                                ("c.weight", "BF16", [2, 2], 2), ("d.weight", "I8", [3], 1),
                                ("e.scalar", "F32", [], 4)]:
        n = 1
        for s in shape:
            n *= s
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + n * el]}
        data += bytes((i * 3 + 60) % 256 for i in range(n * el))
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def byte_chars():  # GPT-2's byte-to-character mapping
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


# a tiny byte-level BPE: the 256 bytes, three merges, two control tokens
BPE_EXTRA = [(" a", 1), ("ab", 1), (" ab", 1), ("<|im_start|>", 3), ("<|im_end|>", 3)]
BPE_MERGES = [(" ", "a"), ("a", "b"), (" a", "b")]


def bpe_vocab_gguf():
    bc = byte_chars()
    enc = lambda t: "".join(bc[b] for b in t.encode())
    tokens = [bc[b] for b in range(256)] + [enc(p) if t == 1 else p for p, t in BPE_EXTRA]
    types = [1] * 256 + [t for _, t in BPE_EXTRA]
    merges = [enc(a) + " " + enc(b) for a, b in BPE_MERGES]
    s = lambda x: struct.pack("<Q", len(x.encode())) + x.encode()
    kv = [("general.architecture", 8, s("qwen2")), ("tokenizer.ggml.model", 8, s("gpt2")),
          ("tokenizer.ggml.pre", 8, s("qwen2")),
          ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(tokens)) + b"".join(map(s, tokens))),
          ("tokenizer.ggml.token_type", 9, struct.pack(f"<IQ{len(types)}i", 5, len(types), *types)),
          ("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(map(s, merges))),
          ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 259)),
          ("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 260))]
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for key, t, v in kv:
        out += s(key) + struct.pack("<I", t) + v
    return out


def bpe_tokenizer_only_slm():  # the same vocabulary as export writes it: section format 2
    pieces = [bytes([b]) for b in range(256)] + [p.encode() for p, _ in BPE_EXTRA]
    types = [1] * 256 + [t for _, t in BPE_EXTRA]
    ids = {p: i for i, p in reversed(list(enumerate(pieces)))}
    tok = struct.pack("<6I", len(pieces), max(map(len, pieces)), 1, 2, 0, len(BPE_MERGES))
    for p, t in zip(pieces, types):
        tok += struct.pack("<fIB", 0.0, len(p), t) + p
    for a, b in BPE_MERGES:
        tok += struct.pack("<II", ids[a.encode()], ids[b.encode()])
    hdr = b"SRCHLGHT" + struct.pack("<II8iff2I2i2I", 2, 256, DIM, HID, L, NH, NKV, HD, len(pieces),
                                    SEQ, 10000.0, 1e-5, 0, 0, 259, 260, len(tok), 0)
    hdr += bytes(256 - len(hdr))
    return hdr + tok


def per_layer_slm():  # version 2, q4_0 blocks, wv with per-layer types (the table after the tokenizer)
    tok = bpe_tokenizer_only_slm()[256:]
    v, d, l = 256 + len(BPE_EXTRA), 32, 2
    types = [4, 0, 4, 4, 255, 4, 0, 4, 4, 4, 0, 4, 0, 0, 0]
    rows = [v, l, l * d, l * d, l * d, l * d, l, l * d, l * d, l * d, 1, v]
    hdr = b"SRCHLGHT" + struct.pack("<II8iff2I2i2I", 2, 256, d, d, l, 1, 1, d, v, SEQ, 10000.0,
                                    1e-5, 0, 4, 259, 260, len(tok), 15)
    hdr += bytes(types) + bytes(1)
    body = hdr + bytes(256 - len(hdr)) + tok + bytes([4, 4])
    for i, r in enumerate(rows):
        body += bytes(-len(body) % 64)
        body += floats(r * d, i) if types[i] == 0 else \
            b"".join(struct.pack("<H", 0x2C00) + bytes((j * 7 + k) % 256 for j in range(16))
                     for k in range(r))
    return body


def main():
    put("model/tiny-f32.slm", slm(0, False))
    put("model/tiny-f16-shared.slm", slm(1, True))
    put("model/tiny-bf16.slm", slm(2, False))
    put("model/tiny-q8_0-shared.slm", slm(3, True))
    put("model/tokenizer-only.slm", slm(0, False, tokenizer_only=True))
    put("llama2c/ckpt-shared.bin", b"\0" + llama2c(True))
    put("llama2c/ckpt-cls.bin", b"\0" + llama2c(False))
    put("llama2c/tokenizer.bin", b"\1" + struct.pack("<H", V) + tokenizer_bin())
    put("safetensors/mixed.safetensors", safetensors())
    put("gguf/bpe-vocab.gguf", bpe_vocab_gguf())
    put("model/bpe-tokenizer-only.slm", bpe_tokenizer_only_slm())
    put("model/per-layer-q4_0.slm", per_layer_slm())


if __name__ == "__main__":
    main()
