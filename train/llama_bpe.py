"""A byte-fallback BPE tokenizer in Llama 2's tokenizer.json layout, trained with `tokenizers`.

Shared by train/train.py (the default model's tokenizer) and tests/fixtures/make_fixtures.py
(the fixtures' tokenizer), so that both go through export's tokenizer.json reader the same
way. Ids: <unk> 0, <s> 1, </s> 2, the 256 byte tokens <0x00>..<0xFF> at 3..258, then the
single characters and the merged pieces the trainer produced, in its order.
"""
import sys

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers


def sentencepiece_normalizer():
    """A space becomes U+2581, and one is prepended: sentencepiece's dummy prefix."""
    return normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])


def build(lines, vocab_size, spare, keep=lambda piece: True):
    """Trains on lines, asking the trainer for `spare` pieces more than needed, and keeps the
    pieces for which keep() is true. Returns (the tokenizer, its vocabulary: piece -> id)."""
    tk = tokenizers.Tokenizer(models.BPE())
    tk.normalizer = sentencepiece_normalizer()
    # pieces never span words: "▁" only ever starts one, as in sentencepiece
    tk.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 259 + spare, show_progress=False,
                                  special_tokens=[])
    tk.train_from_iterator(lines, trainer=trainer)
    trained = tk.get_vocab()
    pieces = [p for p, _ in sorted(trained.items(), key=lambda kv: kv[1])]
    chars = [p for p in pieces if len(p) == 1 and keep(p)]
    merged = [p for p in pieces if len(p) > 1 and keep(p)]
    need = vocab_size - 259
    if len(chars) + len(merged) < need:
        sys.exit(f"training gave {len(chars) + len(merged)} pieces, need {need}")
    pieces = chars + merged[: need - len(chars)]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = 3 + b
    for p in pieces:
        vocab[p] = len(vocab)
    assert len(vocab) == vocab_size
    # merges as LlamaConverter makes them: every split of a piece into two pieces, by piece id
    merges = []
    for p, pid in vocab.items():
        if pid < 259:
            continue
        for i in range(1, len(p)):
            a, b = p[:i], p[i:]
            if a in vocab and b in vocab and vocab[a] >= 259 and vocab[b] >= 259:
                merges.append((pid, vocab[a], vocab[b], a, b))
    merges.sort()
    bpe = models.BPE(vocab, [(a, b) for _, _, _, a, b in merges], unk_token="<unk>",
                     byte_fallback=True, fuse_unk=True)
    tok = tokenizers.Tokenizer(bpe)
    tok.normalizer = sentencepiece_normalizer()
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                            for t in ("<unk>", "<s>", "</s>")])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok, vocab
