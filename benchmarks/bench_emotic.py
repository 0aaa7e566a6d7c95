"""EMOTIC throughput: image-embedding extraction and context-head training, against bare loops.

On a synthetic corpus in the EMOTIC layout (640×480 JPEGs, 1–2 people each):

1. embedding extraction of the body crops with the `image` extractor (timm resnet18 at
   224 px, random initialisation, batch 32, one process), against a bare loop doing the same
   work (PIL decode, crop, resize, normalise, batched forward) over the same crops;
2. the same through `fusion extract` (2 workers, the store's hashing and Parquet writing);
3. training the context head (`ContextFusion`, fixed epochs, no early stopping) against a
   bare PyTorch loop over the same network, loss and optimiser, on the corpus's persons and on
   their embeddings tiled to EMOTIC's training-set size (23,706 persons): the default engine
   (on one CPU, `fusion.lit.FitLoop` driving the LightningModule) and the Lightning Trainer
   (`engine: lightning`), runs interleaved (bare, default, Trainer, bare, …), medians of 5.

With `--device cuda` (a GPU) all of it runs on the GPU (the extractor and the bare loops on
the device, the head in bf16 mixed precision through the Lightning Trainer, the bare head loop
under the same autocast), and `--finetune` adds one timed epoch of end-to-end fine-tuning
(`ContextFinetune`: both backbones trained on the images, augmentation, the data loader's
workers), naming the card.

Target: overhead ≤ 10 % against the bare loops.
    .venv/bin/python benchmarks/bench_emotic.py [--images 400] [--backbone resnet18] [--device cuda] [--finetune]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_embeddings(samples, backbone: str, size: int, batch: int, device: str = "cpu") -> np.ndarray:
    import timm
    import torch
    from PIL import Image

    torch.manual_seed(0)
    model = timm.create_model(backbone, pretrained=False, num_classes=0).eval().to(device)
    mean, sd = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    out, crops = [], []

    def flush():
        with torch.inference_mode():
            out.append(model(torch.from_numpy(np.stack(crops)).to(device)).float().cpu().numpy())
        crops.clear()

    for s in samples:
        box = tuple(int(s.labels[c]) for c in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
        with Image.open(s.media["image"]) as im:
            arr = np.asarray(im.convert("RGB").crop(box).resize((size, size), Image.BILINEAR), np.float32) / 255
        crops.append(((arr - mean) / sd).transpose(2, 0, 1))
        if len(crops) == batch:
            flush()
    if crops:
        flush()
    return np.concatenate(out)


def bare_training(X: dict, Y: np.ndarray, V: np.ndarray, epochs: int, batch: int, hidden: int,
                  device: str = "cpu") -> None:
    import torch

    from fusion.lit import Head, head_loss
    from fusion.models.nets.context_fusion import ContextFusionNet

    torch.manual_seed(0)
    net = ContextFusionNet({k: v.shape[1] for k, v in X.items()}, Y.shape[1], 3, hidden=hidden).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    xs = {k: torch.as_tensor((v - v.mean(0)) / (v.std(0) + 1e-8), dtype=torch.float32, device=device)
          for k, v in X.items()}
    mask = {k: torch.ones(len(Y), dtype=torch.bool, device=device) for k in X}
    y = torch.as_tensor(Y, dtype=torch.float32, device=device)
    v = torch.as_tensor((V - V.mean(0)) / V.std(0), dtype=torch.float32, device=device)
    amp = device.startswith("cuda")
    cat, vad = Head("cat", "multilabel", Y.shape[1], loss="dynamic"), Head("vad", "regression", 3, loss="margin_l2",
                                                                         margin=0.1, weight=0.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(Y), generator=g).split(batch):
            idx = idx.to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                out = net({k: t[idx] for k, t in xs.items()}, {k: m[idx] for k, m in mask.items()})
            loss = head_loss(cat, out["cat"], y[idx], None)[0] + 0.5 * head_loss(vad, out["vad"], v[idx], None)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()


def train_once(engine: str | None, X: dict, Y: np.ndarray, V: np.ndarray, epochs: int, device: str = "cpu") -> None:
    """The bare loop (engine None), or `ContextFusion` with the engine named."""
    from fusion.models.context_fusion import ContextFusion
    from fusion.models.targets import Targets

    if engine is None:
        bare_training(X, Y, V, epochs, 64, 128, device)
    else:
        ContextFusion(hidden=128, max_epochs=epochs, patience=epochs, batch_size=64, engine=engine,
                      device=device).fit(X, Targets.multilabel(Y, V))
    sync(device)


def finetune_epoch(root: Path, backbone: str, size: int, device: str) -> None:
    """One timed epoch of end-to-end fine-tuning of both streams' backbones on the images."""
    from fusion.datasets.emotic import Emotic
    from fusion.models.context_finetune import ContextFinetune, ImageRows
    from fusion.models.targets import Targets

    ds = Emotic(root)
    lab, samples = ds.labels(), ds.samples()
    by_id = {s.sample_id: s for s in samples}
    rows = ImageRows([by_id[i] for i in lab.index], {"body": {"crop": "body"}, "context": {"crop": "context"}})
    Y = lab[[c for c in lab.columns if c.startswith("cat_")]].to_numpy(float)
    V = lab[["valence", "arousal", "dominance"]].to_numpy(float)
    model = ContextFinetune(backbone=backbone, image_size=size, batch_size=32, max_epochs=1, patience=1,
                            num_workers=2, device=device)
    t0 = time.perf_counter()
    model.fit(rows, Targets.multilabel(Y, V))
    sync(device)
    t = time.perf_counter() - t0
    print(f"end-to-end fine-tuning, one epoch: {len(rows)} persons × 2 streams ({backbone} at {size} px, "
          f"batch 32, augmentation, 2 loader workers) in {t:.1f} s = {len(rows) / t:.1f} persons/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-rows", type=int, default=23706, dest="train_rows",
                        help="persons for the second training row (EMOTIC's training set: 23,706)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU)")
    parser.add_argument("--finetune", action="store_true", help="also time one end-to-end fine-tuning epoch")
    args = parser.parse_args()
    print(machine())
    import torch

    torch.set_num_threads(2)
    dev = args.device
    if dev.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    from features.image import ImageEmbeddingExtractor, load_backbone
    from fusion.datasets.emotic import Emotic
    from fusion.synthetic.emotic_corpus import generate_emotic_corpus

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = generate_emotic_corpus(tmp / "emotic", n_images=args.images, seed=0, size=(640, 480))
        samples = Emotic(root).samples()
        n = len(samples)
        print(f"{args.images} images, {n} persons (640×480 JPEG), {args.backbone} at {args.size} px, 2 threads")
        ex = ImageEmbeddingExtractor(backbone=args.backbone, crop="body", image_size=args.size, batch_size=32,
                                     device=dev)
        load_backbone(args.backbone, None, 0, dev)  # built once, outside both timings
        rows = []
        for label, fn in (("bare timm loop", lambda: bare_embeddings(samples, args.backbone, args.size, 32, dev)),
                          ("image extractor", lambda: ex.process_samples([(s, None) for s in samples]))):
            fn()  # warm-up (page cache, allocator)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                sync(dev)
                times.append(time.perf_counter() - t0)
            rows.append((label, float(np.median(times))))
            print(f"{label:<32} {n / rows[-1][1]:7.1f} crops/s (median of 3: {rows[-1][1]:.1f} s)")
        print(f"extraction overhead: {100 * (rows[1][1] / rows[0][1] - 1):+.1f} %")
        cmd = [sys.executable, "-m", "fusion.cli", "extract", "--config", str(ROOT / "configs/extract/emotic.yaml"),
               "--set", f"dataset.root={root}", "--set", f"store={tmp / 'store'}", "--set", "progress=false",
               "--only", "body", "--set", f"features.body.extractor.params.backbone={args.backbone}",
               "--set", f"features.body.extractor.params.image_size={args.size}",
               "--set", f"features.body.extractor.params.device={dev}"]
        m = run_measured(cmd, env={"OMP_NUM_THREADS": "1"})
        print(f"fusion extract (2 workers, 1 thread each, store writes; process start and imports included): "
              f"{n / m.seconds:.1f} crops/s ({m.seconds:.1f} s, peak RSS {m.peak_rss_mib:.0f} MiB)")
        res = ex.process_samples([(s, None) for s in samples])
        X = {"body": res.frame.to_numpy(float)}
        ctx = ImageEmbeddingExtractor(backbone=args.backbone, crop="context", image_size=args.size, device=dev)
        X["context"] = ctx.process_samples([(s, None) for s in samples]).frame.to_numpy(float)
        lab = Emotic(root).labels()
        Y = lab[[c for c in lab.columns if c.startswith("cat_")]].to_numpy(float)
        V = lab[["valence", "arousal", "dominance"]].to_numpy(float)
        # the corpus's persons, and the same embeddings tiled to EMOTIC's training-set size
        reps = -(-args.train_rows // n)
        for rows_n, epochs in ((n, args.epochs), (args.train_rows, max(3, args.epochs // 6))):
            Xb = {k: np.tile(v, (reps, 1))[:rows_n] for k, v in X.items()}
            Yb, Vb = np.tile(Y, (reps, 1))[:rows_n], np.tile(V, (reps, 1))[:rows_n]
            runs = {"bare PyTorch loop": None, "ContextFusion (default engine)": "auto",
                    "ContextFusion (Lightning Trainer)": "lightning"}
            times: dict[str, list[float]] = {k: [] for k in runs}
            for engine in runs.values():
                train_once(engine, Xb, Yb, Vb, epochs, dev)  # warm-up
            for _ in range(5):  # interleaved, so that drift in the machine's speed hits all alike
                for label, engine in runs.items():
                    t0 = time.perf_counter()
                    train_once(engine, Xb, Yb, Vb, epochs, dev)
                    times[label].append(time.perf_counter() - t0)
            med = {k: float(np.median(v)) for k, v in times.items()}
            for label, t in med.items():
                print(f"{label:<34} {rows_n * epochs / t:9.0f} person-epochs/s ({rows_n} persons, {epochs} epochs; "
                      f"median of 5: {t:.2f} s)")
            base = med["bare PyTorch loop"]
            print(f"training overhead at {rows_n} persons: default engine "
                  f"{100 * (med['ContextFusion (default engine)'] / base - 1):+.1f} %, Lightning Trainer "
                  f"{100 * (med['ContextFusion (Lightning Trainer)'] / base - 1):+.1f} %")
        if args.finetune:
            finetune_epoch(root, args.backbone, args.size, dev)


if __name__ == "__main__":
    main()
