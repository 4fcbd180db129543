#!/usr/bin/env python3
"""train.py: trains searchlight's default model, a small Llama on the King James Bible.

Run from the repository root (CPU only; about 12 minutes on 2 cores):

    sudo apt-get install bible-kjv            # Debian: the `bible` reader + bible-kjv-text
    python3 -m venv /tmp/trainvenv
    /tmp/trainvenv/bin/pip install -r train/requirements.txt
    /tmp/trainvenv/bin/python train/train.py build/train/kjv-hf
    ./export --dtype q8_0 build/train/kjv-hf models/kjv.slm
    ./run models/kjv.slm --ppl train/kjv-heldout.txt

train/train-log.csv is the log of the committed model's run (a copy of <out>/train-log.csv).

--shape kjv256 trains a wider model instead of the default one (same corpus, tokenizer, CTX,
steps and schedule): dim 256, 6 layers, 4 heads of 64, 2 KV heads, SwiGLU hidden 768, tied
embeddings (CFG_KJV256). Every matrix then has rows (its input dimension: 256 or 768) that
are a multiple of 256, so ggml's K quant types (Q4_K, Q5_K, Q6_K) apply to every tensor; it
serves to measure what 4-bit types cost in perplexity (scripts/ppl-llamacpp.sh). Its log is
train/train-log-kjv256.csv (held-out loss 2.985 over all windows; 5246208 parameters, about
1.6 s a step on 2 idle cores, so about 27 minutes; that run took 61 minutes on a busy machine).
Without --shape the script trains the default model, unchanged. To train this one:

    /tmp/trainvenv/bin/python train/train.py --shape kjv256 build/train/kjv256-hf

What it does, deterministically (fixed seeds, 2 threads, deterministic algorithms):

1. Corpus. Debian's bible-kjv-text package holds the KJV in a compressed format
   (/usr/lib/bible.data) that its reader, `bible` (package bible-kjv), prints; the script runs
   `bible -l100000 gen1:1-rev22:21` and keeps each verse's text, one verse per line (chapter
   headings and verse numbers dropped). Chapters are numbered 0..1188 in canon order; every
   20th (index % 20 == 19, 59 chapters) is held out and written to train/kjv-heldout.txt; the
   other 1130 are the training text.
2. Tokenizer. A BPE with byte fallback trained with `tokenizers` on the training text, laid
   out as Llama 2's sentencepiece tokenizer.json (<unk> <s> </s>, 256 <0xNN> byte tokens, then
   pieces with "▁" for a space), as tests/fixtures/make_fixtures.py does. Newlines and other
   characters outside the vocabulary go through the byte tokens.
3. Model. LlamaForCausalLM (see CFG; CFG_KJV256 with --shape kjv256), tied embeddings, trained
   for STEPS steps of BATCH windows, each <s> followed by CTX-1 tokens from a random offset of
   the training tokens (so every window starts like `run`'s generation and --ppl windows do).
   AdamW, linear warmup then cosine decay. Every EVAL_EVERY steps it logs the mean train loss
   and the held-out loss (on the first EVAL_WINDOWS held-out windows) to <out>/train-log.csv
   and stdout; the last line scores every held-out window.
4. Saves <out>/ with save_pretrained (f32 safetensors), config.json and tokenizer.json:
   what `export` reads.
"""
import argparse
import csv
import math
import os
import random
import re
import subprocess
import sys
import time

import numpy as np
import torch
import transformers

import llama_bpe  # beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
HELDOUT = os.path.join(HERE, "kjv-heldout.txt")

VOCAB = 2048
CTX = 256
CFG = dict(vocab_size=VOCAB, hidden_size=192, intermediate_size=512, num_hidden_layers=6,
           num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=CTX,
           rope_theta=10000.0, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
           tie_word_embeddings=True)
# --shape kjv256: every matrix's rows a multiple of 256 (K quants apply to all tensors).
CFG_KJV256 = dict(CFG, hidden_size=256, intermediate_size=768, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64)
SHAPES = {"default": CFG, "kjv256": CFG_KJV256}
SEED = 1234
STEPS = 1000
BATCH = 16
LR = 2e-3
MIN_LR = 2e-4
WARMUP = 60
WEIGHT_DECAY = 0.1
EVAL_EVERY = 100
EVAL_WINDOWS = 48


def read_kjv():
    """The chapters of the KJV, each a list of verse strings, in canon order."""
    out = subprocess.run(["bible", "-l100000", "gen1:1-rev22:21"], check=True,
                         capture_output=True, text=True).stdout
    chapters = []
    for line in out.split("\n"):
        if not line.strip():
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            text = " ".join(m.group(2).split())
            chapters[-1].append(text)
        else:  # a heading: "Genesis 1"
            chapters.append([])
    assert len(chapters) == 1189, len(chapters)
    assert sum(len(c) for c in chapters) == 31102, sum(len(c) for c in chapters)
    return chapters


def build_tokenizer(lines):
    """The default model's tokenizer: printable pieces only (the corpus has none other)."""
    ok = lambda p: all(c.isprintable() or c == "\u2581" for c in p)
    return llama_bpe.build(lines, VOCAB, 200, ok)[0]


def windows(ids, n=None):
    """Cuts ids as `run --ppl` does: each window is <s> + up to CTX-1 tokens (full ones only)."""
    step = CTX - 1
    out = [[1] + ids[i:i + step] for i in range(0, len(ids) - step + 1, step)]
    return torch.tensor(out[:n] if n else out, dtype=torch.long)


def loss_of(model, x):
    logits = model(input_ids=x).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB).float(),
                                             x[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model, win):
    model.eval()
    total = 0.0
    for i in range(0, len(win), 16):
        b = win[i:i + 16]
        total += loss_of(model, b).item() * len(b)
    model.train()
    return total / len(win)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output directory (Hugging Face layout)")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="default",
                    help="model shape: default (models/kjv.slm's) or kjv256 (rows a multiple "
                    "of 256, for K quants)")
    ap.add_argument("--no-heldout-file", action="store_true",
                    help="do not (re)write train/kjv-heldout.txt")
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()

    chapters = read_kjv()
    train_ch = [c for i, c in enumerate(chapters) if i % 20 != 19]
    held_ch = [c for i, c in enumerate(chapters) if i % 20 == 19]
    train_text = "\n".join("\n".join(c) for c in train_ch) + "\n"
    held_text = "\n".join("\n".join(c) for c in held_ch) + "\n"
    if not args.no_heldout_file:
        with open(HELDOUT, "w") as f:
            f.write(held_text)

    tok = build_tokenizer([v for c in train_ch for v in c])
    train_ids = tok.encode(train_text, add_special_tokens=False).ids
    held_ids = tok.encode(held_text, add_special_tokens=False).ids
    print(f"corpus: {len(train_text)} bytes / {len(train_ids)} tokens to train on, "
          f"{len(held_text)} bytes / {len(held_ids)} tokens held out", flush=True)
    train_t = torch.tensor(train_ids, dtype=torch.long)
    held_all = windows(held_ids)
    held_eval = held_all[:EVAL_WINDOWS]

    cfg = transformers.LlamaConfig(**SHAPES[args.shape])
    model = transformers.LlamaForCausalLM(cfg).float()
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < WARMUP:
            return LR * (step + 1) / WARMUP
        p = (step - WARMUP) / max(1, args.steps - WARMUP)
        return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * p))

    gen = torch.Generator().manual_seed(SEED)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train-log.csv"), "w", newline="")
    w = csv.writer(log)
    w.writerow(["step", "tokens", "seconds", "lr", "train_loss", "heldout_loss"])
    bos = torch.ones(BATCH, 1, dtype=torch.long)
    run_loss, run_n = 0.0, 0
    t_train = time.time()
    for step in range(args.steps + 1):
        if step % EVAL_EVERY == 0 or step == args.steps:
            final = step == args.steps
            hl = evaluate(model, held_all if final else held_eval)
            tl = run_loss / run_n if run_n else float("nan")
            el = time.time() - t_train
            w.writerow([step, step * BATCH * (CTX - 1), f"{el:.0f}", f"{lr_at(step):.6f}",
                        f"{tl:.4f}", f"{hl:.4f}"])
            log.flush()
            print(f"step {step:5d}  {el:6.0f}s  train {tl:.4f}  held-out {hl:.4f}"
                  f"{' (all %d windows)' % len(held_all) if final else ''}", flush=True)
            run_loss, run_n = 0.0, 0
        if step == args.steps:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        off = torch.randint(0, len(train_t) - CTX, (BATCH,), generator=gen)
        x = torch.cat([bos, torch.stack([train_t[o:o + CTX - 1] for o in off.tolist()])], 1)
        loss = loss_of(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += loss.item()
        run_n += 1
    log.close()

    model.eval()
    model.save_pretrained(args.out)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    print(f"saved {args.out} in {time.time() - t0:.0f}s total", flush=True)


if __name__ == "__main__":
    main()
