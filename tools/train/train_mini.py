#!/usr/bin/env python3
"""Train the two small real xLSTM models that ship in `models/`.

Corpus: Jane Austen's six completed novels (public domain) as shipped by the
Debian package `r-cran-janeaustenr` (read without R by rdata_reader.py).
The script finds the package in /usr/lib/R/site-library/janeaustenr, or in
`--corpus-dir`, or downloads the .deb itself with `apt-get download
r-cran-janeaustenr` (Debian archive only) and unpacks it with `dpkg-deb -x`.

Environment (pinned versions in tools/train/requirements.txt):

    python3.11 -m venv /opt/oracle
    /opt/oracle/bin/pip install -r tools/train/requirements.txt

Exact commands used for the shipped models (run from the repository root;
CPU only, one thread, deterministic given the seed):

    /opt/oracle/bin/python tools/train/train_mini.py --model large   # -> models/xlstm-large-mini/
    /opt/oracle/bin/python tools/train/train_mini.py --model v1      # -> models/xlstm-v1-mini/

Each run: extracts the corpus, splits every novel into the first 95% of its
paragraphs (training) and the last 5% (held out), trains the byte-level BPE
tokenizer on the training split (identical for both models), trains the model
with AdamW + cosine schedule, saves config.json / model.safetensors (F16) /
tokenizer.json, then reloads the saved F16 weights into a fresh float32 model
and writes eval.json and README.md (the model card).

Only the evaluation of an existing model directory (no training):

    /opt/oracle/bin/python tools/train/train_mini.py --model large --eval-only

A quick throughput check (a few optimizer steps, nothing saved):

    /opt/oracle/bin/python tools/train/train_mini.py --model large --bench 5
"""
import argparse
import dataclasses
import glob
import hashlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rdata_reader import read_lazyload_db  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEB_PACKAGE = "r-cran-janeaustenr"
# (R object name, title, first published)
NOVELS = [
    ("sensesensibility", "Sense and Sensibility", 1811),
    ("prideprejudice", "Pride and Prejudice", 1813),
    ("mansfieldpark", "Mansfield Park", 1814),
    ("emma", "Emma", 1815),
    ("northangerabbey", "Northanger Abbey", 1817),
    ("persuasion", "Persuasion", 1817),
]
HELDOUT_FRACTION = 0.05
BOS_ID = 0  # <|endoftext|>
PAD_ID = 1  # <|padding|>
SPECIAL_TOKENS = ["<|endoftext|>", "<|padding|>"]

# Evaluation fixture: the passage is taken from the held-out part of this novel,
# the greedy prompt is chosen among the first words of held-out sentences.
EVAL_NOVEL = "prideprejudice"
EVAL_PASSAGE_TOKENS = 512  # including the leading BOS
GREEDY_NEW_TOKENS = 32

DEFAULTS = {
    "large": dict(out="models/xlstm-large-mini", steps=1000, batch=16, ctx=256, lr=4e-3, warmup=100,
                  min_lr_ratio=0.1, weight_decay=0.1, embedding_dim=128, num_heads=4, num_blocks=4),
    "v1": dict(out="models/xlstm-v1-mini", steps=800, batch=16, ctx=256, lr=3e-3, warmup=100,
               min_lr_ratio=0.1, weight_decay=0.1, embedding_dim=128, num_heads=4, num_blocks=4),
}


# ----------------------------------------------------------------------------------------------
# corpus


def find_corpus(corpus_dir: str | None, cache_dir: str) -> tuple[str, dict]:
    """Return the janeaustenr R package directory and provenance info."""
    candidates = []
    if corpus_dir:
        candidates.append(corpus_dir)
    candidates.append("/usr/lib/R/site-library/janeaustenr")
    candidates.append(os.path.join(cache_dir, "deb", "usr/lib/R/site-library/janeaustenr"))
    for c in candidates:
        if os.path.exists(os.path.join(c, "data", "Rdata.rdx")):
            break
    else:
        os.makedirs(cache_dir, exist_ok=True)
        subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=cache_dir, check=True)
        debs = sorted(glob.glob(os.path.join(cache_dir, f"{DEB_PACKAGE}_*.deb")))
        subprocess.run(["dpkg-deb", "-x", debs[-1], os.path.join(cache_dir, "deb")], check=True)
        c = candidates[-1]
    info = {"debian_package": DEB_PACKAGE, "r_package_dir": c}
    debs = sorted(glob.glob(os.path.join(cache_dir, f"{DEB_PACKAGE}_*.deb")))
    if debs:
        info["deb_file"] = os.path.basename(debs[-1])
        info["deb_sha256"] = hashlib.sha256(open(debs[-1], "rb").read()).hexdigest()
    desc = open(os.path.join(c, "DESCRIPTION")).read()
    for line in desc.splitlines():
        if line.startswith("Version:"):
            info["r_package_version"] = line.split(":", 1)[1].strip()
    return c, info


def load_novels(pkg_dir: str) -> dict[str, list[str]]:
    """Each novel as a list of paragraphs (wrapped lines joined with single spaces)."""
    db = read_lazyload_db(os.path.join(pkg_dir, "data", "Rdata.rdx"), os.path.join(pkg_dir, "data", "Rdata.rdb"))
    novels = {}
    for key, _, _ in NOVELS:
        paras, cur = [], []
        for line in db[key]:
            line = (line or "").strip()
            if line:
                cur.append(line)
            elif cur:
                paras.append(" ".join(cur))
                cur = []
        if cur:
            paras.append(" ".join(cur))
        novels[key] = paras
    return novels


def split_novels(novels: dict[str, list[str]]):
    """First 95% of each novel's paragraphs -> train, last 5% -> held out."""
    train, held = {}, {}
    for key, paras in novels.items():
        n_held = max(1, int(round(len(paras) * HELDOUT_FRACTION)))
        train[key] = paras[:-n_held]
        held[key] = paras[-n_held:]
    return train, held


# ----------------------------------------------------------------------------------------------
# tokenizer


def train_tokenizer(train_paras: dict[str, list[str]], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [p for key, _, _ in NOVELS for p in train_paras[key]]
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    assert tok.token_to_id("<|endoftext|>") == BOS_ID and tok.token_to_id("<|padding|>") == PAD_ID
    return tok


def encode_stream(tok, paras: list[str]):
    """Encode paragraphs joined by '\n' as one stream; return ids and the token index of each paragraph start."""
    text = "\n".join(paras)
    starts_char = []
    pos = 0
    for p in paras:
        starts_char.append(pos)
        pos += len(p) + 1
    enc = tok.encode(text)
    ids = np.array(enc.ids, dtype=np.int64)
    offsets = [o[0] for o in enc.offsets]
    char_to_tok = {}
    for ti, c in enumerate(offsets):
        char_to_tok.setdefault(c, ti)
    starts = [char_to_tok[c] for c in starts_char if c in char_to_tok]
    return ids, np.array(starts, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# models


def large_config(args, vocab_size: int, mode: str):
    from xlstm.xlstm_large.model import xLSTMLargeConfig

    return xLSTMLargeConfig(
        embedding_dim=args.embedding_dim,
        num_heads=args.num_heads,
        num_blocks=args.num_blocks,
        vocab_size=vocab_size,
        use_bias=False,
        norm_eps=1e-6,
        norm_reduction_force_float32=True,
        add_out_norm=True,
        qk_dim_factor=0.5,
        v_dim_factor=1.0,
        chunkwise_kernel="chunkwise--native_autograd",
        sequence_kernel="native_sequence__native",
        step_kernel="native",
        mode=mode,
        chunk_size=64,
        # must be True even in train mode: mLSTMLayer.forward always unpacks (h, state) from the
        # backend, which returns only h when return_last_states=False (crash in xlstm 2.0.6)
        return_last_states=True,
        autocast_kernel_dtype="float32",
        eps=1e-6,
        inference_state_dtype="float32",
        ffn_proj_factor=2.6667,
        ffn_round_up_to_multiple_of=64,
        gate_soft_cap=15.0,
        output_logit_soft_cap=30.0,
        weight_mode="single",
    )


def init_large_(model, cfg):
    """xLSTMLarge has no init scheme of its own (PyTorch defaults). Use the usual xLSTM recipe:
    small-init (std sqrt(2/(5E))) for embedding / input projections / lm_head, Wang init for the
    output projections, small gate weights, forget-gate biases linspace(3, 6) per head and
    input-gate bias -3 (xLSTM-7B used -10; a milder value suits a very short run)."""
    from xlstm.components.init import small_init_init_, wang_init_, bias_linspace_init_

    E, L = cfg.embedding_dim, cfg.num_blocks
    small_init_init_(model.embedding.weight, dim=E)
    small_init_init_(model.lm_head.weight, dim=E)
    for blk in model.backbone.blocks:
        ml = blk.mlstm_layer
        for lin in (ml.q, ml.k, ml.v, ml.ogate_preact):
            small_init_init_(lin.weight, dim=E)
        wang_init_(ml.out_proj.weight, dim=E, num_blocks=L)
        torch.nn.init.normal_(ml.igate_preact.weight, std=0.02)
        torch.nn.init.normal_(ml.fgate_preact.weight, std=0.02)
        torch.nn.init.constant_(ml.igate_preact.bias, -3.0)
        bias_linspace_init_(ml.fgate_preact.bias, start=3.0, end=6.0)
        small_init_init_(blk.ffn.proj_up.weight, dim=E)
        small_init_init_(blk.ffn.proj_up_gate.weight, dim=E)
        wang_init_(blk.ffn.proj_down.weight, dim=E, num_blocks=L)


def build_large(args, vocab_size: int, mode: str, init: bool = False):
    from xlstm.xlstm_large.model import xLSTMLarge

    cfg = large_config(args, vocab_size, mode)
    model = xLSTMLarge(cfg)
    if init:
        init_large_(model, cfg)
    return model, cfg


def v1_config(args, vocab_size: int):
    from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig,
                       sLSTMLayerConfig, xLSTMLMModelConfig)

    return xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(
            mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=args.num_heads,
                                   proj_factor=2.0)),
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(backend="vanilla", num_heads=args.num_heads, conv1d_kernel_size=4,
                                   bias_init="powerlaw_blockdependent"),
            feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu"),
        ),
        # context_length only sizes the mLSTM causal-mask buffer of the parallel forward; training
        # windows are args.ctx tokens, 512 lets forward() score the 512-token eval passage.
        context_length=max(512, args.ctx),
        num_blocks=args.num_blocks,
        embedding_dim=args.embedding_dim,
        slstm_at=[1],
        vocab_size=vocab_size,
    )


def v1_config_from_json(d: dict):
    """Rebuild xLSTMLMModelConfig from dataclasses.asdict() output (nested dataclasses, init fields only)."""
    from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig,
                       sLSTMLayerConfig, xLSTMLMModelConfig)

    def mk(cls, dd):
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in dd.items() if k in names})

    d = dict(d)
    m = dict(d["mlstm_block"])
    m["mlstm"] = mk(mLSTMLayerConfig, m["mlstm"])
    d["mlstm_block"] = mk(mLSTMBlockConfig, m)
    s = dict(d["slstm_block"])
    s["slstm"] = mk(sLSTMLayerConfig, s["slstm"])
    s["feedforward"] = mk(FeedForwardConfig, s["feedforward"])
    d["slstm_block"] = mk(sLSTMBlockConfig, s)
    return mk(xLSTMLMModelConfig, d)


def build_v1(args, vocab_size: int):
    from xlstm import xLSTMLMModel

    cfg = v1_config(args, vocab_size)
    model = xLSTMLMModel(cfg)
    model.reset_parameters()
    return model, cfg


def hf_state_dict_large(model) -> dict:
    """xlstm-package state_dict -> transformers xLSTMForCausalLM names (only the embedding differs)."""
    out = {}
    for k, v in model.state_dict().items():
        out["backbone.embeddings.weight" if k == "embedding.weight" else k] = v
    return out


def large_state_dict_from_hf(sd: dict) -> dict:
    return {("embedding.weight" if k == "backbone.embeddings.weight" else k): v for k, v in sd.items()}


def large_hf_config_json(cfg, tok_vocab: int) -> dict:
    ffn_dim = int(math.ceil(cfg.embedding_dim * cfg.ffn_proj_factor / cfg.ffn_round_up_to_multiple_of)
                  * cfg.ffn_round_up_to_multiple_of)
    return {
        "architectures": ["xLSTMForCausalLM"],
        "model_type": "xlstm",
        "torch_dtype": "float16",
        "vocab_size": cfg.vocab_size,
        "embedding_dim": cfg.embedding_dim,
        "hidden_size": cfg.embedding_dim,
        "num_heads": cfg.num_heads,
        "num_blocks": cfg.num_blocks,
        "num_hidden_layers": cfg.num_blocks,
        "qk_dim_factor": cfg.qk_dim_factor,
        "v_dim_factor": cfg.v_dim_factor,
        "ffn_proj_factor": cfg.ffn_proj_factor,
        "ffn_round_up_to_multiple_of": cfg.ffn_round_up_to_multiple_of,
        "norm_eps": cfg.norm_eps,
        "norm_reduction_force_float32": cfg.norm_reduction_force_float32,
        "gate_soft_cap": cfg.gate_soft_cap,
        "output_logit_soft_cap": cfg.output_logit_soft_cap,
        "add_out_norm": cfg.add_out_norm,
        "use_bias": cfg.use_bias,
        "weight_mode": "single",
        "chunk_size": cfg.chunk_size,
        "eps": cfg.eps,
        "chunkwise_kernel": "chunkwise--native_autograd",
        "sequence_kernel": "native_sequence__native",
        "step_kernel": "native",
        "mode": "inference",
        "return_last_states": True,
        "autocast_kernel_dtype": "float32",
        "inference_state_dtype": "float32",
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": BOS_ID,
        "eos_token_id": BOS_ID,
        "pad_token_id": PAD_ID,
        "_derived_dims": {
            "qk_dim": int(cfg.embedding_dim * cfg.qk_dim_factor),
            "v_dim": int(cfg.embedding_dim * cfg.v_dim_factor),
            "qk_head_dim": int(cfg.embedding_dim * cfg.qk_dim_factor) // cfg.num_heads,
            "v_head_dim": int(cfg.embedding_dim * cfg.v_dim_factor) // cfg.num_heads,
            "ffn_dim": ffn_dim,
            "tokenizer_vocab_size": tok_vocab,
        },
    }


# ----------------------------------------------------------------------------------------------
# data sampling


class Sampler:
    """Training windows: BOS + ctx tokens starting at a random paragraph start of a random novel
    (novels weighted by token count). Inputs are the first ctx ids, targets the last ctx ids."""

    def __init__(self, streams, ctx: int, seed: int):
        self.ctx = ctx
        self.rng = np.random.default_rng(seed)
        self.items = []
        for ids, starts in streams:
            ok = starts[starts + ctx <= len(ids)]
            self.items.append((ids, ok))
        w = np.array([len(ok) for _, ok in self.items], dtype=np.float64)
        self.w = w / w.sum()

    def batch(self, bsz: int) -> torch.Tensor:
        out = np.empty((bsz, self.ctx + 1), dtype=np.int64)
        out[:, 0] = BOS_ID
        novel_idx = self.rng.choice(len(self.items), size=bsz, p=self.w)
        for b, ni in enumerate(novel_idx):
            ids, ok = self.items[ni]
            s = ok[self.rng.integers(len(ok))]
            out[b, 1:] = ids[s:s + self.ctx]
        return torch.from_numpy(out)


def heldout_windows(ids: np.ndarray, starts: np.ndarray, ctx: int):
    """Score every held-out token exactly once. Each window is BOS + tokens from a paragraph start
    (the latest paragraph start not after the first unscored token, if that still leaves room);
    returns (window ids, index of the first scored prediction target within the window)."""
    out = []
    pos = 0  # first unscored token
    starts = list(starts)
    # the very first token (after BOS) is scored too
    while pos < len(ids):
        cands = [s for s in starts if s <= pos and pos - s < ctx // 2]
        s = max(cands) if cands else pos
        w = ids[s:s + ctx]
        first = int(pos - s)  # index in w of first scored target
        out.append((np.concatenate([[BOS_ID], w]), first))
        pos = s + len(w)
    return out


def heldout_loss(logits_fn, windows, batch=16):
    """Mean CE over held-out tokens. logits_fn(LongTensor [B,S]) -> logits [B,S,V] (f32)."""
    total, count = 0.0, 0
    # group windows of equal length
    by_len = {}
    for w, first in windows:
        by_len.setdefault(len(w), []).append((w, first))
    for L, ws in by_len.items():
        for i in range(0, len(ws), batch):
            chunk = ws[i:i + batch]
            x = torch.tensor(np.stack([w for w, _ in chunk]), dtype=torch.long)
            with torch.no_grad():
                lg = logits_fn(x[:, :-1]).float()
            ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
            ce = ce.view(len(chunk), -1)
            for j, (_, first) in enumerate(chunk):
                total += ce[j, first:].sum().item()
                count += ce.shape[1] - first
    return total / count, count


# ----------------------------------------------------------------------------------------------
# training


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def param_groups(model, wd):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.ndim >= 2 and "embedding" not in n:
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train(model, sampler, args, log):
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    model.train()
    t0 = time.time()
    ema = None
    history = []
    n_steps = args.bench if args.bench else args.steps
    for step in range(n_steps):
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.batch(args.batch)
        logits = model(x[:, :-1])
        if isinstance(logits, tuple):  # xLSTMLarge returns (logits, state) when return_last_states
            logits = logits[0]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        if not math.isfinite(lv):
            raise RuntimeError(f"non-finite loss at step {step}")
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % 25 == 0 or step == n_steps - 1:
            el = time.time() - t0
            tps = (step + 1) * args.batch * args.ctx / el
            log(f"step {step:5d}/{n_steps} loss {lv:.4f} ema {ema:.4f} lr {lr:.2e} gnorm {gn:.2f} "
                f"{el:7.1f}s {tps:6.0f} tok/s")
            history.append({"step": step, "loss": round(lv, 4), "ema": round(ema, 4), "elapsed_s": round(el, 1)})
    return {"steps": n_steps, "wall_s": time.time() - t0, "final_loss": lv, "final_loss_ema": ema,
            "tokens_seen": n_steps * args.batch * args.ctx, "history": history}


# ----------------------------------------------------------------------------------------------
# saving / reloading


def save_f16(sd: dict, path: str, metadata: dict):
    from safetensors.torch import save_file

    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}, path, metadata=metadata)
    os.chmod(path, 0o644)


def load_f32(path: str) -> dict:
    from safetensors.torch import load_file

    sd = load_file(path)
    for k, v in sd.items():
        assert v.dtype == torch.float16, (k, v.dtype)
    return {k: v.float() for k, v in sd.items()}


# ----------------------------------------------------------------------------------------------
# evaluation (official implementation, float32, from the saved F16 weights)


def greedy_large(model, prompt_ids, n_new):
    """Prefill with the chunkwise kernel (inference mode), then S=1 steps (native step kernel)."""
    x = torch.tensor([prompt_ids], dtype=torch.long)
    toks, margins, top2 = [], [], []
    with torch.no_grad():
        logits, state = model(x)
        last = logits[0, -1]
        for _ in range(n_new):
            v, i = torch.topk(last.float(), 2)
            toks.append(int(i[0]))
            margins.append(float(v[0] - v[1]))
            top2.append([[int(i[0]), float(v[0])], [int(i[1]), float(v[1])]])
            logits, state = model(torch.tensor([[toks[-1]]], dtype=torch.long), state)
            last = logits[0, -1]
    return toks, margins, top2


def greedy_v1(model, prompt_ids, n_new):
    """Token-by-token model.step() for the prompt and the continuation."""
    toks, margins, top2 = [], [], []
    state = None
    with torch.no_grad():
        for t in prompt_ids:
            logits, state = model.step(torch.tensor([[t]], dtype=torch.long), state)
        last = logits[0, -1]
        for _ in range(n_new):
            v, i = torch.topk(last.float(), 2)
            toks.append(int(i[0]))
            margins.append(float(v[0] - v[1]))
            top2.append([[int(i[0]), float(v[0])], [int(i[1]), float(v[1])]])
            logits, state = model.step(torch.tensor([[toks[-1]]], dtype=torch.long), state)
            last = logits[0, -1]
    return toks, margins, top2


def passage_loss(logits: torch.Tensor, ids: list[int]) -> float:
    x = torch.tensor(ids, dtype=torch.long)
    return F.cross_entropy(logits[0, :-1].float(), x[1:]).item()


def candidate_prompts(held_paras: list[str], n=12):
    """First words (6-8 words) of held-out sentences that start a paragraph, in order."""
    out = []
    for p in held_paras:
        words = p.split()
        if len(words) < 12 or not words[0][:1].isalpha() or not words[0][:1].isupper():
            continue
        out.append(" ".join(words[:7]))
        if len(out) >= n:
            break
    return out


# ----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["large", "v1"], required=True)
    ap.add_argument("--out", default=None, help="output directory (default models/xlstm-<model>-mini)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--ctx", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--min-lr-ratio", type=float)
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--embedding-dim", type=int)
    ap.add_argument("--num-heads", type=int)
    ap.add_argument("--num-blocks", type=int)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--corpus-dir", default=None, help="janeaustenr R package directory")
    ap.add_argument("--cache-dir", default="/tmp/xlstm-train-cache")
    ap.add_argument("--bench", type=int, default=0, help="only time this many training steps")
    ap.add_argument("--eval-only", action="store_true")
    args = ap.parse_args()
    for k, v in DEFAULTS[args.model].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    out = os.path.join(REPO, args.out) if not os.path.isabs(args.out) else args.out

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    t_start = time.time()
    pkg_dir, corpus_info = find_corpus(args.corpus_dir, args.cache_dir)
    novels = load_novels(pkg_dir)
    train_paras, held_paras = split_novels(novels)
    corpus_stats = {}
    for key, title, year in NOVELS:
        corpus_stats[key] = {
            "title": title, "published": year,
            "paragraphs_train": len(train_paras[key]), "paragraphs_heldout": len(held_paras[key]),
            "chars_train": sum(len(p) + 1 for p in train_paras[key]),
            "chars_heldout": sum(len(p) + 1 for p in held_paras[key]),
        }
    log(f"corpus: {pkg_dir} {corpus_info.get('r_package_version')}; "
        f"{sum(s['chars_train'] for s in corpus_stats.values())} train chars, "
        f"{sum(s['chars_heldout'] for s in corpus_stats.values())} held-out chars")

    from tokenizers import Tokenizer

    if args.eval_only:
        tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    else:
        tok = train_tokenizer(train_paras, args.vocab_size)
    V = tok.get_vocab_size()
    train_streams = {k: encode_stream(tok, train_paras[k]) for k, _, _ in NOVELS}
    held_streams = {k: encode_stream(tok, held_paras[k]) for k, _, _ in NOVELS}
    n_train_tok = sum(len(s[0]) for s in train_streams.values())
    n_held_tok = sum(len(s[0]) for s in held_streams.values())
    log(f"tokenizer vocab {V}; train tokens {n_train_tok}, held-out tokens {n_held_tok}")

    # unigram baseline (add-one smoothed, fitted on the training split)
    counts = np.ones(V, dtype=np.float64)
    for ids, _ in train_streams.values():
        counts += np.bincount(ids, minlength=V)
    logp = np.log(counts / counts.sum())
    held_all = np.concatenate([s[0] for s in held_streams.values()])
    unigram_ce = float(-logp[held_all].mean())

    # ---------------- build + train
    if args.model == "large":
        model, cfg = build_large(args, V, "train", init=True)
    else:
        model, cfg = build_v1(args, V)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {args.model}: {n_params} parameters")

    sampler = Sampler([train_streams[k] for k, _, _ in NOVELS], args.ctx, args.seed)
    if args.bench:
        r = train(model, sampler, args, log)
        log(f"bench: {r['steps']} steps in {r['wall_s']:.1f}s = "
            f"{r['tokens_seen'] / r['wall_s']:.0f} tok/s, {r['wall_s'] / r['steps']:.2f} s/step")
        return

    train_info = None
    if not args.eval_only:
        train_info = train(model, sampler, args, log)
        log(f"trained {train_info['steps']} steps in {train_info['wall_s']:.0f}s, "
            f"final loss {train_info['final_loss']:.4f} (ema {train_info['final_loss_ema']:.4f})")
        os.makedirs(out, exist_ok=True)
        tok.save(os.path.join(out, "tokenizer.json"))
        meta = {"format": "pt"}
        if args.model == "large":
            save_f16(hf_state_dict_large(model), os.path.join(out, "model.safetensors"), meta)
            with open(os.path.join(out, "config.json"), "w") as f:
                json.dump(large_hf_config_json(cfg, V), f, indent=2)
        else:
            save_f16(model.state_dict(), os.path.join(out, "model.safetensors"), meta)
            with open(os.path.join(out, "config.json"), "w") as f:
                # The package's config plus the prompt convention (BOS 0), which its loaders ignore.
                json.dump({**dataclasses.asdict(cfg), "bos_token_id": BOS_ID, "eos_token_id": BOS_ID}, f, indent=2)
        with open(os.path.join(out, "train_log.json"), "w") as f:
            json.dump({k: v for k, v in train_info.items()}, f, indent=1)
    else:
        tl = os.path.join(out, "train_log.json")
        if os.path.exists(tl):
            train_info = json.load(open(tl))
    del model

    # ---------------- reload F16 weights into a fresh float32 model and evaluate
    sd = load_f32(os.path.join(out, "model.safetensors"))
    if args.model == "large":
        cj = json.load(open(os.path.join(out, "config.json")))
        from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

        names = {f.name for f in dataclasses.fields(xLSTMLargeConfig)}
        cfg_inf = xLSTMLargeConfig(**{k: v for k, v in cj.items() if k in names})
        assert cfg_inf.mode == "inference" and cfg_inf.return_last_states
        model = xLSTMLarge(cfg_inf)
        model.load_state_dict(large_state_dict_from_hf(sd), strict=True)
        model.eval()
        cfg_tr = dataclasses.replace(cfg_inf, mode="train")
        model_tr = xLSTMLarge(cfg_tr)
        model_tr.load_state_dict(model.state_dict())
        model_tr.eval()
        logits_fn = lambda x: model(x)[0]  # noqa: E731  (inference mode: chunkwise prefill, any length)
    else:
        from xlstm import xLSTMLMModel

        cj = json.load(open(os.path.join(out, "config.json")))
        cfg_v1 = v1_config_from_json(cj)
        model = xLSTMLMModel(cfg_v1)
        model.load_state_dict(sd, strict=True)
        model.eval()
        logits_fn = lambda x: model(x)  # noqa: E731

    windows = []
    for k, _, _ in NOVELS:
        windows += heldout_windows(*held_streams[k], args.ctx)
    t_ev = time.time()
    ho_loss, ho_count = heldout_loss(logits_fn, windows)
    log(f"held-out loss {ho_loss:.4f} (ppl {math.exp(ho_loss):.2f}) over {ho_count} tokens "
        f"[{time.time() - t_ev:.0f}s]; unigram baseline {unigram_ce:.4f}")
    # the same measurement on seen text (the last 5%-sized slice of each novel's training split)
    tail_windows = []
    for k, _, _ in NOVELS:
        n_tail = len(held_paras[k])
        tail_windows += heldout_windows(*encode_stream(tok, train_paras[k][-n_tail:]), args.ctx)
    tail_loss, tail_count = heldout_loss(logits_fn, tail_windows)
    log(f"same on the training tail: {tail_loss:.4f} over {tail_count} tokens")

    # fixed passage: first EVAL_PASSAGE_TOKENS-1 held-out tokens of EVAL_NOVEL, from a paragraph start
    ids_h, starts_h = held_streams[EVAL_NOVEL]
    passage = [BOS_ID] + [int(t) for t in ids_h[starts_h[0]:starts_h[0] + EVAL_PASSAGE_TOKENS - 1]]
    with torch.no_grad():
        if args.model == "large":
            lg_inf, _ = model(torch.tensor([passage]))  # inference mode: chunkwise prefill
            lg_chk = model_tr(torch.tensor([passage[:EVAL_PASSAGE_TOKENS // 64 * 64]]))[0]
            # step-by-step check of the same passage
            st = None
            step_logits = []
            for t in passage:
                lgs, st = model(torch.tensor([[t]]), st)
                step_logits.append(lgs[0, -1])
            lg_step = torch.stack(step_logits)[None]
        else:
            lg_inf = model(torch.tensor([passage]))  # parallel forward
            lg_chk = lg_inf
            st = None
            step_logits = []
            for t in passage:
                lgs, st = model.step(torch.tensor([[t]]), st)
                step_logits.append(lgs[0, -1])
            lg_step = torch.stack(step_logits)[None]
    p_loss = passage_loss(lg_inf, passage)
    p_loss_step = passage_loss(lg_step, passage)
    diff_step = (lg_inf - lg_step).abs().max().item()
    diff_chk = (lg_inf[:, :lg_chk.shape[1]] - lg_chk).abs().max().item()
    log(f"passage loss {p_loss:.5f} (step path {p_loss_step:.5f}); max |logit diff| forward vs step {diff_step:.2e}")

    # greedy prompt: among candidate held-out sentence openings pick the one whose 32-token greedy
    # continuation has the largest minimum top-1/top-2 margin (robust fixture)
    cands = candidate_prompts(held_paras[EVAL_NOVEL])
    best = None
    for text in cands:
        pids = [BOS_ID] + tok.encode(text).ids
        if args.model == "large":
            g, m, t2 = greedy_large(model, pids, GREEDY_NEW_TOKENS)
        else:
            g, m, t2 = greedy_v1(model, pids, GREEDY_NEW_TOKENS)
        log(f"  prompt {text!r}: min margin {min(m):.3f} -> {tok.decode(g)!r}")
        if best is None or min(m) > min(best[3]):
            best = (text, pids, g, m, t2)
    text, pids, g, m, t2 = best

    tf_check = None
    if args.model == "large":
        try:
            from transformers import xLSTMForCausalLM

            hf = xLSTMForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
            hf.eval()
            with torch.no_grad():
                o = hf(torch.tensor([passage]), use_cache=False)
            tf_check = {"transformers_version": __import__("transformers").__version__,
                        "max_abs_logit_diff_vs_xlstm_package": (o.logits - lg_inf).abs().max().item()}
        except Exception as e:  # noqa: BLE001
            tf_check = {"error": repr(e)[:500]}
        log(f"transformers check: {tf_check}")

    import importlib.metadata as md

    versions = {p: md.version(p) for p in ["torch", "xlstm", "mlstm-kernels", "tokenizers", "safetensors",
                                            "numpy", "transformers"]}
    eval_json = {
        "model": os.path.basename(out),
        "implementation": ("xlstm.xlstm_large.model.xLSTMLarge" if args.model == "large"
                           else "xlstm.xLSTMLMModel"),
        "dtype": "float32 compute from the F16 weights in model.safetensors",
        "versions": versions,
        "passage": {
            "source": f"held-out split of {dict((k, t) for k, t, _ in NOVELS)[EVAL_NOVEL]} "
                      f"(first {EVAL_PASSAGE_TOKENS - 1} tokens of its last {HELDOUT_FRACTION:.0%} of paragraphs)",
            "token_ids": passage,
            "num_tokens": len(passage),
            "num_predictions": len(passage) - 1,
            "mean_ce_loss": p_loss,
            "mean_ce_loss_step_path": p_loss_step,
            "path": ("forward() in inference mode: chunkwise--native_autograd prefill, chunk_size 64"
                     if args.model == "large" else "forward() (parallel mLSTM, vanilla sLSTM)"),
            "max_abs_logit_diff_forward_vs_step": diff_step,
            "text": tok.decode(passage[1:]),
        },
        "greedy": {
            "prompt_text": text,
            "prompt_token_ids": pids,
            "new_tokens": GREEDY_NEW_TOKENS,
            "path": ("inference mode: chunkwise--native_autograd prefill of the prompt, then S=1 forward "
                     "calls with the native step kernel, state carried" if args.model == "large"
                     else "model.step() token by token for prompt and continuation"),
            "continuation_token_ids": g,
            "continuation_text": tok.decode(g),
            "margins_top1_top2": m,
            "min_margin": min(m),
            "top2": t2,
            "candidates_tried": cands,
        },
        "heldout": {
            "mean_ce_loss": float(ho_loss),
            "perplexity": math.exp(ho_loss),
            "num_tokens": int(ho_count),
            "unigram_baseline_ce_loss": unigram_ce,
            "unigram_baseline_perplexity": math.exp(unigram_ce),
            "windows": f"BOS + up to {args.ctx} tokens from a paragraph start, each held-out token scored once",
            "train_tail_ce_loss": float(tail_loss),
            "train_tail_num_tokens": int(tail_count),
            "train_tail_note": "same windows on the last paragraphs of each novel's training split "
                               "(as many paragraphs as held out): seen text, for the generalisation gap",
        },
    }
    if args.model == "large":
        eval_json["passage"]["max_abs_logit_diff_inference_vs_train_mode"] = diff_chk
        eval_json["transformers_check"] = tf_check
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(eval_json, f, indent=1)

    # ---------------- model card
    write_card(out, args, cfg if not args.eval_only else None, model, n_params, V, corpus_info, corpus_stats,
               n_train_tok, n_held_tok, train_info, eval_json, sd)
    log(f"done in {time.time() - t_start:.0f}s; files: " +
        ", ".join(f"{f} {os.path.getsize(os.path.join(out, f))}" for f in sorted(os.listdir(out))))


def write_card(out, args, cfg, model, n_params, V, corpus_info, corpus_stats, n_train_tok, n_held_tok,
               train_info, ev, sd):
    name = os.path.basename(out)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    cj = json.load(open(os.path.join(out, "config.json")))
    texts = "\n".join(f"  - *{s['title']}* ({s['published']}): {s['paragraphs_train']} training / "
                      f"{s['paragraphs_heldout']} held-out paragraphs" for s in corpus_stats.values())
    if args.model == "large":
        E = cj["embedding_dim"]
        arch = (
            f"xLSTM Large architecture (the xLSTM-7B design, `xlstm.xlstm_large.model.xLSTMLarge` / "
            f"transformers `xLSTMForCausalLM`), scaled down: embedding_dim {E}, {cj['num_heads']} heads, "
            f"{cj['num_blocks']} mLSTM blocks, qk_dim {cj['_derived_dims']['qk_dim']} "
            f"(head dim {cj['_derived_dims']['qk_head_dim']}), v_dim {cj['_derived_dims']['v_dim']} "
            f"(head dim {cj['_derived_dims']['v_head_dim']}), SwiGLU FFN width {cj['_derived_dims']['ffn_dim']}, "
            f"vocab {cj['vocab_size']}, untied embedding / lm_head, gate soft-cap 15, logit soft-cap 30, "
            f"chunk_size 64, weight_mode single.")
        layout = ("Tensor names follow transformers `xLSTMForCausalLM` (`backbone.embeddings.weight`, "
                  "`backbone.blocks.{i}.mlstm_layer.q.weight`, ..., `backbone.out_norm.weight`, `lm_head.weight`). "
                  "The xlstm package's `xLSTMLarge.state_dict()` differs only in `embedding.weight`. "
                  "`config.json` uses the xLSTM-7b field names and also `hidden_size` / `num_hidden_layers` "
                  "(transformers' `xLSTMConfig` reads those and would otherwise keep its 7B defaults); "
                  "`_derived_dims` is informational.")
        train_kernel = ("mode \"train\", chunkwise_kernel \"chunkwise--native_autograd\", sequence_kernel "
                        "\"native_sequence__native\", step_kernel \"native\", autocast_kernel_dtype \"float32\", "
                        "float32 weights")
    else:
        m = cj["mlstm_block"]["mlstm"]
        ffn_w = sd["xlstm_block_stack.blocks.1.ffn.proj_down.weight"].shape[1]
        arch = (
            f"original xLSTM (`xlstm.xLSTMLMModel`, xLSTMLMModelConfig): embedding_dim {cj['embedding_dim']}, "
            f"{cj['num_blocks']} blocks, sLSTM at {cj['slstm_at']} (others mLSTM), vocab {cj['vocab_size']}, "
            f"untied embedding / lm_head. mLSTM blocks: {m['num_heads']} heads, proj_factor {m['proj_factor']} "
            f"(inner dim {m['_inner_embedding_dim']}, head dim {m['_inner_embedding_dim'] // m['num_heads']}), "
            f"conv1d kernel {m['conv1d_kernel_size']}, qkv_proj_blocksize {m['qkv_proj_blocksize']}. "
            f"sLSTM block: {cj['slstm_block']['slstm']['num_heads']} heads (head dim "
            f"{cj['embedding_dim'] // cj['slstm_block']['slstm']['num_heads']}), conv1d kernel "
            f"{cj['slstm_block']['slstm']['conv1d_kernel_size']}, backend \"vanilla\", gated FFN "
            f"(gelu, proj_factor {cj['slstm_block']['feedforward']['proj_factor']}).")
        layout = (
            "`config.json` is `dataclasses.asdict(xLSTMLMModelConfig)`. Known quirk of that dump: "
            f"the sLSTM feed-forward entry says `embedding_dim: {cj['slstm_block']['feedforward']['embedding_dim']}`"
            f" and `_proj_up_dim: {cj['slstm_block']['feedforward']['_proj_up_dim']}` — the real FFN width is "
            f"**{ffn_w}** (`proj_up.weight` is [{2 * ffn_w}, {cj['embedding_dim']}], `proj_down.weight` "
            f"[{cj['embedding_dim']}, {ffn_w}]); derive it from the weight shapes. `context_length` "
            f"{cj['context_length']} only sizes the mLSTM causal-mask buffer (training windows were {args.ctx} "
            "tokens). `model.safetensors` is the `state_dict()` in F16; the sLSTM `_recurrent_kernel_` / `_bias_` "
            "are in the **vanilla** backend layout (R [NH, 4*DH, DH], bias ordered [gate][head][DH]). The sLSTM "
            "`dtype*` fields (\"bfloat16\") are CUDA-kernel settings unused by the vanilla backend; the model was "
            "trained and evaluated in float32.")
        train_kernel = ("sLSTM backend \"vanilla\" (pure PyTorch), mLSTM parallel_stabilized_simple, "
                        "float32 weights")
    tl = train_info or {}
    hist = tl.get("history", [])
    card = f"""# {name}

A tiny **real** xLSTM language model trained on Jane Austen's novels, shipped inside xlstm-wgpu so that
`cargo run --release --example generate` produces English-looking text offline. It is a small model
({n_params / 1e6:.2f} M parameters, trained for {tl.get('wall_s', 0) / 60:.0f} minutes on one CPU core):
expect Austen-flavoured phrases with real words and punctuation that are locally grammatical but wander
and repeat (greedy decoding loops quickly) — not coherent prose.

## Files
- `config.json`, `model.safetensors` (F16, {size} bytes), `tokenizer.json`, `eval.json` (reference
  numbers computed with the official Python implementation), `train_log.json` (loss curve).

## Corpus
- Debian package **`{corpus_info['debian_package']}`** (R package janeaustenr {corpus_info.get('r_package_version', '?')},
  Debian main; {corpus_info.get('deb_file', '')} sha256 `{corpus_info.get('deb_sha256', '?')}`), read without R by
  `tools/train/rdata_reader.py`.
- Texts: Jane Austen's six completed novels, plain text as transcribed in that package (one R character
  vector per novel, no licence header or front matter beyond title lines):
{texts}
- Licence: the novels (published 1811–1817; Austen died 1817) are in the **public domain**. The package
  that bundles them is MIT-licensed (Debian `copyright`: Julia Silge 2016–2017, MIT).
- Split: each novel's paragraphs (wrapped lines joined by spaces, paragraphs joined by `\\n`); the first 95 %
  of every novel is training data ({n_train_tok} tokens), the last 5 % is held out ({n_held_tok} tokens).

## Tokenizer
Byte-level BPE trained on the training split only with HF `tokenizers` (ByteLevel pre-tokenizer,
`add_prefix_space=false`, ByteLevel decoder), vocab {V}. Special tokens like xLSTM-7b's / GPT-NeoX's:
`<|endoftext|>` = id 0 (BOS and EOS), `<|padding|>` = id 1. The tokenizer does **not** add BOS itself:
prepend id 0 once (every training window started with BOS 0 followed by text from a paragraph start).

## Architecture
{arch}

Parameters: **{n_params:,}** ({n_params / 1e6:.2f} M).

{layout}

## Training
- {train_kernel}; CPU, `torch.set_num_threads(1)`, seed {args.seed}.
- {tl.get('steps', '?')} steps of AdamW (betas 0.9/0.95, weight decay {args.weight_decay} on matrices, grad clip 1.0),
  peak lr {args.lr}, {args.warmup} warmup steps, cosine decay to {args.min_lr_ratio} x peak; batch {args.batch} x
  {args.ctx} tokens (BOS + {args.ctx} tokens per window, windows start at random paragraph starts).
- Tokens seen: **{tl.get('tokens_seen', 0):,}** (~{tl.get('tokens_seen', 0) / max(1, n_train_tok):.1f} epochs).
- Wall time: **{tl.get('wall_s', 0) / 60:.1f} min** ({platform.processor() or platform.machine()}, 1 thread).
- Final training loss: {tl.get('final_loss', float('nan')):.4f} (last batch), {tl.get('final_loss_ema', float('nan')):.4f} (EMA).

## Evaluation (official implementation, float32, from the F16 weights as saved)
- Held-out loss over all {ev['heldout']['num_tokens']} held-out tokens: **{ev['heldout']['mean_ce_loss']:.4f} nats/token,
  perplexity {ev['heldout']['perplexity']:.2f}**. Unigram baseline (training-split token frequencies):
  {ev['heldout']['unigram_baseline_ce_loss']:.4f} nats/token (perplexity {ev['heldout']['unigram_baseline_perplexity']:.1f}).
  Scored the same way, the last paragraphs of the *training* split give {ev['heldout']['train_tail_ce_loss']:.4f}:
  the gap to the held-out loss is what this small model memorised of a {n_train_tok / 1e6:.2f} M-token corpus seen
  ~{tl.get('tokens_seen', 0) / max(1, n_train_tok):.1f} times (the training-batch loss is lower still because random
  paragraph-start windows oversample dialogue-dense, easier stretches).
- Fixed passage in `eval.json` ({ev['passage']['num_tokens']} tokens incl. BOS, {ev['passage']['source']}):
  mean CE {ev['passage']['mean_ce_loss']:.5f}; {ev['passage']['path']}. Token-by-token step path gives
  {ev['passage']['mean_ce_loss_step_path']:.5f} (max |logit diff| {ev['passage']['max_abs_logit_diff_forward_vs_step']:.1e}).
- Greedy continuation ({ev['greedy']['path']}), prompt `{ev['greedy']['prompt_text']}` (BOS + {len(ev['greedy']['prompt_token_ids']) - 1} tokens),
  {ev['greedy']['new_tokens']} new tokens, minimum top-1/top-2 logit margin {ev['greedy']['min_margin']:.3f}. Prompt, then `|`, then the
  decoded continuation:

```text
{ev['greedy']['prompt_text']}|{ev['greedy']['continuation_text']}
```

  (The prompt was chosen among the first words of {len(ev['greedy']['candidates_tried'])} held-out paragraphs as the one
  with the largest minimum margin, so that re-implementations can match the greedy ids robustly.)
"""
    if ev.get("transformers_check"):
        card += (f"- transformers `xLSTMForCausalLM.from_pretrained` on this directory loads `config.json` + "
                 f"`model.safetensors` as is; passage logits with use_cache=False: {ev['transformers_check']} "
                 "(with the xlstm package installed, transformers runs the package's own blocks, so 0 is expected; "
                 "this checks the file layout and config fields, not an independent implementation).\n")
    card += f"""
## Retrain
```
/opt/oracle/bin/pip install -r tools/train/requirements.txt   # into a Python 3.11 venv at /opt/oracle
/opt/oracle/bin/python tools/train/train_mini.py --model {args.model}
```
(downloads `{corpus_info['debian_package']}` with `apt-get download` if it is not installed; deterministic on CPU for a
given seed and library versions; `--eval-only` re-runs the evaluation of the saved files.)
"""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(card)


if __name__ == "__main__":
    main()
