"""Memory and speed of the streaming training data as an image folder grows.

    python benchmarks/data_memory.py                              # N = 5,000 and 50,000
    python benchmarks/data_memory.py --sizes 5000 --in-memory     # also the in-memory load_dataset path

For each N: writes N JPEGs (10 classes, 32 x 32 px: Fashion-MNIST images coloured per class and image)
to ``DIR/train/<class>/`` of a temporary folder (plus 10 per class in ``DIR/val/``), then, in a fresh
process, reads one full epoch through the training loader (:class:`nas.data.loader.TrainStream`:
random-resized crop and flip to ``--img-size``, batches of ``--batch-size``, ``--workers`` processes)
and reports:

* the size of the file list the dataset holds;
* peak resident memory: the training process (``getrusage(RUSAGE_SELF)``), the largest worker
  (``getrusage(RUSAGE_CHILDREN)``), and the sum over the process and its workers sampled every 20 ms
  from ``/proc`` (RSS, which counts pages the workers share with their parent once per process, and
  PSS, which splits them);
* images/s over the epoch (worker start-up included).

``--in-memory`` also measures ``nas.data.load_dataset(DIR, img_size=...)``, which holds every image.
The folder is deleted afterwards.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from nas.data.datasets import ShardedOrder, load_dataset  # noqa: E402
from nas.data.folder import scan_folder  # noqa: E402
from nas.data.loader import TrainStream, default_workers  # noqa: E402
from nas.training import TrainConfig  # noqa: E402

MiB = 1024 * 1024
CLASS_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                          [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]],
                         dtype=np.float32) / 255.0


def make_folder(root: Path, n: int, per_class_val: int = 10, size: int = 32, seed: int = 0) -> float:
    """``n`` training JPEGs under ``root/train/<class>/`` and ``10 * per_class_val`` under ``root/val/``;
    returns the seconds it took."""
    t0 = time.perf_counter()
    src = load_dataset("fashion-mnist", "train")
    imgs, labels = src.images[:, 0].numpy(), src.labels.numpy()
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", 10 * per_class_val)):
        for c in range(10):
            (root / split / f"class{c}").mkdir(parents=True, exist_ok=True)
        pick = rng.integers(0, len(imgs), count)
        for k, i in enumerate(pick):
            c = int(labels[i])
            grey = np.asarray(Image.fromarray(imgs[i]).resize((size, size), Image.BILINEAR), np.float32) / 255.0
            tint = np.clip(CLASS_COLOURS[c] + rng.normal(0, 0.15, 3), 0.05, 1.0)
            rgb = (grey[..., None] * tint * 255 + rng.normal(0, 6, (size, size, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(rgb, "RGB").save(root / split / f"class{c}" / f"{k:07d}.jpg", quality=90)
    return time.perf_counter() - t0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


def _mem_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB, (0, 0) if it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class PeakSampler(threading.Thread):
    """Samples the summed RSS and PSS of this process and all its descendants until stopped."""

    def __init__(self, every_s: float = 0.02):
        super().__init__(daemon=True)
        self.every_s, self.peak_rss, self.peak_pss, self.max_procs = every_s, 0, 0, 0
        self._halt = threading.Event()

    def run(self):
        me = os.getpid()
        while not self._halt.is_set():
            pids, todo = [], [me]
            while todo:
                p = todo.pop()
                pids.append(p)
                todo += _children(p)
            mem = [_mem_kib(p) for p in pids]
            self.peak_rss = max(self.peak_rss, sum(r for r, _ in mem))
            self.peak_pss = max(self.peak_pss, sum(p for _, p in mem))
            self.max_procs = max(self.max_procs, len(pids))
            time.sleep(self.every_s)

    def stop(self):
        self._halt.set()
        self.join()


def measure_stream(folder: str, img_size: int, batch_size: int, workers: int | None) -> dict:
    """One epoch of the training loader over ``folder``'s train split (run in a fresh process)."""
    sampler = PeakSampler()
    sampler.start()
    base_kib = _mem_kib(os.getpid())[0]
    data = scan_folder(folder, "train")
    workers = default_workers(data) if workers is None else workers
    steps = math.ceil(len(data) / batch_size)
    order = ShardedOrder(len(data), batch_size, seed=0)
    stream = TrainStream(data, order, img_size, steps, workers=workers)
    t0 = time.perf_counter()
    n = 0
    for step in range(steps):
        x, y = stream.batch(step)
        n += len(y)
    dt = time.perf_counter() - t0
    stream.close()
    sampler.stop()
    return {"images": len(data), "read": n, "workers": workers, "epoch_s": dt, "images_per_s": n / dt,
            "list_mib": data.nbytes / MiB, "start_rss_mib": base_kib / 1024,
            "self_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "sum_rss_mib": sampler.peak_rss / 1024, "sum_pss_mib": sampler.peak_pss / 1024,
            "processes": sampler.max_procs, "skipped": stream.skipped}


def measure_in_memory(folder: str, img_size: int) -> dict:
    t0 = time.perf_counter()
    data = load_dataset(folder, "train", img_size=img_size)
    return {"images": len(data), "load_s": time.perf_counter() - t0, "tensor_mib": data.images.nbytes / MiB,
            "self_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _in_child(*args: str) -> dict:
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stdout + r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    d = TrainConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--img-size", type=int, default=d.img_size)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--workers", type=int, default=None, help="default: the training default for a folder")
    ap.add_argument("--in-memory", action="store_true", help="also measure load_dataset (every image in memory)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)            # internal: run one measurement here
    ap.add_argument("--measure-in-memory", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.measure:
        print(json.dumps(measure_stream(a.measure, a.img_size, a.batch_size, a.workers)))
        return 0
    if a.measure_in_memory:
        print(json.dumps(measure_in_memory(a.measure_in_memory, a.img_size)))
        return 0

    print(f"training loader, one epoch per N: {a.img_size} px, batch {a.batch_size}, random-resized crop + flip; "
          f"{os.cpu_count()} CPU(s) visible; python {sys.version.split()[0]}")
    common = ["--img-size", str(a.img_size), "--batch-size", str(a.batch_size)]
    if a.workers is not None:
        common += ["--workers", str(a.workers)]
    rows = []
    for n in a.sizes:
        tmp = Path(tempfile.mkdtemp(prefix="effv2-data-memory-"))
        try:
            gen_s = make_folder(tmp, n)
            size_mib = sum(f.stat().st_size for f in (tmp / "train").rglob("*.jpg")) / MiB
            r = _in_child("--measure", str(tmp), *common)
            r.update(n=n, gen_s=gen_s, folder_mib=size_mib)
            if a.in_memory:
                r["in_memory"] = _in_child("--measure-in-memory", str(tmp), *common)
            rows.append(r)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"N={n:>7,}: {r['folder_mib']:.1f} MiB of JPEGs (written in {r['gen_s']:.0f} s); file list "
              f"{r['list_mib']:.2f} MiB; {r['workers']} workers; epoch {r['epoch_s']:.1f} s, "
              f"{r['images_per_s']:,.0f} images/s; {r['skipped']} skipped", flush=True)
    print()
    print(f"{'N':>7} | {'list MiB':>8} | {'start':>6} | {'main peak':>9} | {'worker peak':>11} | "
          f"{'sum RSS':>8} | {'sum PSS':>8} | {'images/s':>8}")
    for r in rows:
        print(f"{r['n']:>7} | {r['list_mib']:>8.2f} | {r['start_rss_mib']:>6.0f} | {r['self_peak_mib']:>9.0f} | "
              f"{r['worker_peak_mib']:>11.0f} | {r['sum_rss_mib']:>8.0f} | {r['sum_pss_mib']:>8.0f} | "
              f"{r['images_per_s']:>8.0f}")
    print("(MiB; start: the process after imports; main / worker peak: getrusage maxrss of the training process "
          "and of its largest worker; sum RSS / PSS: peak over time of the process plus its workers)")
    for r in rows:
        if "in_memory" in r:
            m = r["in_memory"]
            print(f"in memory (load_dataset, img_size {a.img_size}), N={r['n']:,}: peak {m['self_peak_mib']:.0f} MiB "
                  f"({m['tensor_mib']:.0f} MiB of image tensor), {m['load_s']:.1f} s to load")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
