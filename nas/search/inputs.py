"""What a search reads, resolved before any long work: the supernet, the target's table and its latency
predictor, the outputs claimed, and what every process builds from them (:class:`Setup`).

Every call of a search into the latency tables and their predictor goes through this module (and the
end-to-end measurement of the picks, :mod:`nas.search.measure_picks`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from nas.core.distributed import init_distributed, launch, local_cores
from nas.core.files import claim_output, file_digest
from nas.data.datasets import FMNIST_INSTALL
from nas.data.folder import open_dataset
from nas.latency.calibration import calibration_path
from nas.latency.first_use import ensure_local_table
from nas.latency.host_factor import rescale_now
from nas.latency.predictor import LatencyPredictor
from nas.search.base import SearchError
from nas.search.config import SearchConfig
from nas.search.distributed_accuracy import DistributedAccuracy
from nas.space.spaces import SearchSpace, get_space
from nas.supernet.checkpoint import checkpoint_file, checkpoint_space, load_checkpoint, load_supernet
from nas.supernet.evaluate import SubnetEvaluator
from nas.supernet.shipped import shipped_card, shipped_supernet
from nas.supernet.supernet import SlimmableSupernet
from nas.training import TrainConfig, train
from nas.training.config import default_space
from profilers.devices import DeviceError, get_device
from profilers.tables.meta import TableMeta
from profilers.tables.table import COMPUTE_COLUMN, LatencyTable, fallbacks, host_tables_dir, locate

__all__ = ["DEFAULT_SUPERNET", "Setup", "resolve_supernet", "target_names", "claim_outputs", "build_setup",
           "supernet_digest", "table_identity"]

log = logging.getLogger(__name__)

DEFAULT_SUPERNET = "runs/supernet"


def _rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def resolve_supernet(path: str | None) -> str:
    """The supernet a search uses: ``path`` when given; else ``runs/supernet`` when it holds a run (a user's
    own training), else the shipped supernet of the space a run on this machine would train
    (:func:`nas.training.config.default_space`), else ``runs/supernet`` (trained first)."""
    if path is not None:
        return path
    if checkpoint_file(DEFAULT_SUPERNET).exists():
        return DEFAULT_SUPERNET
    shipped = shipped_supernet(default_space())
    if shipped is None:
        return DEFAULT_SUPERNET
    card = shipped_card(shipped)
    about = card.get("summary") or f"see its card {shipped.with_suffix('.json').name}"
    log.info(f"Supernet: the shipped {shipped.name} ({about}). Train your own with --supernet {DEFAULT_SUPERNET} "
             f"(about {card.get('train_minutes', 30):.0f} minutes on two CPU cores).")
    return str(shipped)


def target_names(config: SearchConfig) -> tuple[str, str]:
    """The device and runtime a search's table is of, from the settings alone (no profiling): a table path's
    metadata, or the device entry (a missing table of a device that is not this machine is said here)."""
    if Path(config.target).suffix != ".csv":
        try:
            dev = get_device(config.target)
        except DeviceError as e:
            raise SearchError(f"{e}; or give a table CSV path as --target") from None
        if config.runtime is not None and config.runtime not in dev.runtimes:
            raise SearchError(f"device {dev.name!r} is profiled with {', '.join(dev.runtimes)}, not "
                              f"{config.runtime!r}; pass one of those as --runtime")
        if dev.connection_type == "local" and not os.environ.get("EFFV2_TABLES"):
            return dev.name, config.runtime or dev.runtime       # this host's table: made on first use
    path = locate(config.target, config.runtime)
    meta = TableMeta.read(path)
    if meta is not None:
        return meta.device.name, meta.runtime
    parts = path.name.split(".")
    return parts[0], parts[1] if len(parts) == 3 else config.runtime or "table"


def claim_outputs(config: SearchConfig, out: Path) -> None:
    """Create and probe-write every folder the search will write (:func:`nas.core.files.claim_output`)."""
    claim_output(out, folder=True)
    if not checkpoint_file(config.supernet).exists() and Path(config.supernet) == Path(DEFAULT_SUPERNET):
        claim_output(DEFAULT_SUPERNET, folder=True)          # the supernet is trained there first
    if Path(config.target).suffix != ".csv" and not os.environ.get("EFFV2_TABLES"):
        if get_device(config.target).connection_type == "local":
            claim_output(host_tables_dir(), folder=True)      # this host's table may be measured there


def _prepare_table(config: SearchConfig) -> tuple[Path, bool]:
    """The target's table path, and whether this host's probe was checked against it on the way. A
    ``local`` device's table is this host's: made (profiled and calibrated) on first use, and its probe
    checked against this host otherwise."""
    if Path(config.target).suffix == ".csv" or os.environ.get("EFFV2_TABLES"):
        return locate(config.target, config.runtime), False
    dev = get_device(config.target)
    if dev.connection_type != "local" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return locate(config.target, config.runtime), False   # N processes do not profile: it must exist
    return ensure_local_table(dev.name, config.runtime, _supernet_space(config.supernet), progress=config.progress,
                              allow_foreign=config.allow_foreign_table or None), True


def _load_predictor(config: SearchConfig) -> tuple[LatencyTable, LatencyPredictor]:
    """The target's table (made first when it is this host's and missing) and its latency predictor, the
    table checked against this host (its probe on rank 0 unless checked while it was prepared)."""
    path, probed = _prepare_table(config)     # before any training: a missing table is the first thing to say
    table = LatencyTable.read(path)
    table.verify_host(probe=_rank0() and not probed, allow_foreign=config.allow_foreign_table or None)
    pred = LatencyPredictor.of_table(table)
    if config.forbid_fallback:
        pred = forbid_fallbacks(table, pred)
    if config.rescale and _rank0():                 # the strategies run on rank 0: it alone prices networks
        pred, pred.host_factor = rescale_now(table, pred, allow_foreign=config.allow_foreign_table or None)
    return table, pred


def forbid_fallbacks(table: LatencyTable, pred: LatencyPredictor) -> LatencyPredictor:
    """``pred`` with the units that fell back from the accelerator to the CPU on the table's device priced at
    infinity (``--forbid-fallback``): a :class:`SearchError` for a table that records no compute units."""
    if COMPUTE_COLUMN not in table.rows or not table.rows[COMPUTE_COLUMN].astype(bool).any():
        raise SearchError(f"--forbid-fallback needs the compute units each unit ran on, which {table.path} does not "
                          f"record: measure the target on an iPhone (python -m profilers.coreml --team-id) or on "
                          f"Qualcomm AI Hub (python -m profilers.aihub)")
    fell = fallbacks(table.rows)
    if _rank0():
        some = f" ({', '.join(sorted(fell)[:5])}{', ...' if len(fell) > 5 else ''})" if fell else ""
        log.info("--forbid-fallback: %d unit(s) fell back to the CPU on %s; no network using one is picked%s",
                 len(fell), table.meta.device.name, some)
    return pred.forbidding(fell)


def table_identity(table: LatencyTable) -> dict:
    """What a search's results depend on of its table: its path and the SHA-256 of it and its calibration."""
    cal = calibration_path(table.path)
    return {"table": str(table.path.resolve()), "table_sha256": file_digest(table.path),
            "calibration_sha256": file_digest(cal) if cal.is_file() else None}


def supernet_digest(path: str) -> str:
    """The supernet file's SHA-256 (what the accuracy cache and the run record are keyed by)."""
    return file_digest(checkpoint_file(path))


def _ensure_supernet(config: SearchConfig) -> None:
    """Train the default supernet when it is asked for and absent: one process per core, two at most (the
    CPU recipe's), under torchrun's launcher."""
    path = config.supernet
    if checkpoint_file(path).exists():
        return
    if Path(path) != Path(DEFAULT_SUPERNET):
        raise SearchError(f"no supernet checkpoint at {path}. Train one with: "
                          f"python -m nas.train_supernet --out {path}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SearchError(f"no supernet at {path}. Train it first, e.g. torchrun --nproc_per_node N "
                          f"-m nas.train_supernet --out {path}, then rerun the search")
    nproc = min(2, local_cores())
    log.info(f"No trained supernet at {path}: training the default one first (torchrun --standalone "
             f"--nproc_per_node {nproc} -m nas.train_supernet --out {path} --resume; about half an hour on two "
             f"CPU cores). Interrupt and rerun at any time: it resumes.")
    try:
        launch(train, TrainConfig(out=path, resume=True, progress=config.progress), nproc=nproc)
    except ChildFailedError:
        raise SearchError(f"training the supernet in {path} failed (the error is above); rerun to resume it, or "
                          f"train it alone: torchrun --standalone --nproc_per_node {nproc} -m nas.train_supernet "
                          f"--out {path} --resume") from None


def _supernet_space(path: str) -> SearchSpace:
    """The search space of the supernet at ``path``, or the space it will be trained on when it is still to
    be trained."""
    ck = checkpoint_file(path)
    if not ck.exists():
        if Path(path) != Path(DEFAULT_SUPERNET):
            raise SearchError(f"no supernet checkpoint at {path}. Train one with: "
                              f"python -m nas.train_supernet --out {path}")
        return get_space(default_space())
    return checkpoint_space(load_checkpoint(path)["meta"])        # the space only: no model is built


def _split_test(dataset: str, heldout: int, final: int, logger: logging.Logger | None) -> tuple[int, int]:
    """Search and final images from the test split: as asked where it holds enough; a smaller split (the
    bundled Fashion-MNIST subset's 2,000 images) is shared, at most half to the search, the rest final."""
    n = len(open_dataset(dataset, "test"))
    if not final or heldout + final <= n:
        return heldout, final
    h = min(heldout, n // 2)
    if logger:
        logger.warning(f"the {dataset} test split holds {n} images, fewer than --heldout {heldout} + --final-heldout "
                       f"{final}: {h} for the search, {n - h} for the final comparison"
                       + (f" (the full set: {FMNIST_INSTALL})" if dataset == "fashion-mnist" else ""))
    return h, n - h


@dataclass
class Setup:
    """What every process builds before searching: the predictor, the supernet and its evaluators, and the
    pool that shares accuracy evaluations between the processes (``rank`` of ``world``)."""
    table: LatencyTable
    pred: LatencyPredictor
    net: SlimmableSupernet
    meta: dict
    evaluator: SubnetEvaluator
    final: SubnetEvaluator | None
    pool: DistributedAccuracy
    world: int
    rank: int = 0

    @property
    def space(self) -> SearchSpace:
        return self.net.space


def build_setup(config: SearchConfig) -> Setup:
    """The table (made first when it is this host's and missing), the supernet (trained first when it is the
    default one and absent), the predictor for the supernet's space, and the evaluators of the search's
    held-out images and of the final ones (disjoint), in every process of the group."""
    table, pred = _load_predictor(config)
    _ensure_supernet(config)
    rank, world, dev = init_distributed()
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // world))
    net, meta = load_supernet(config.supernet)
    space = net.space
    if space.to_dict() != pred.space.to_dict():       # a table of another space serves if it holds every unit
        pred = pred.for_space(space)
    missing = pred.missing_keys()
    if missing:
        raise SearchError(f"the table {table.path} (space {table.meta.space!r}) lacks {len(missing)} units "
                          f"of the supernet's space {space.name!r} (e.g. {missing[0]}); {pred.fill_hint()}")
    net.to(dev)
    dataset = meta.get("dataset", "fashion-mnist")
    heldout, final_heldout = _split_test(dataset, config.heldout, config.final_heldout, log if rank == 0 else None)
    evaluator = SubnetEvaluator.from_dataset(net, dataset, heldout=heldout,
                                             calib_batches=config.calib_batches, batch_size=config.batch_size,
                                             seed=config.seed)
    fns = {"search": evaluator.accuracy}
    final = None
    if final_heldout:                      # test images disjoint from the search's, to compare the picks on
        try:
            final = SubnetEvaluator.from_dataset(net, dataset, heldout=final_heldout,
                                                 heldout_start=evaluator.num_heldout,
                                                 calib_batches=config.calib_batches, batch_size=config.batch_size,
                                                 seed=config.seed)
            fns["final"] = final.correct          # per image: the picks are compared image by image
        except ValueError as e:
            if rank == 0:
                log.info(f"No final evaluation of the picks: {e}")
    pool = DistributedAccuracy(fns, progress=config.progress)
    return Setup(table, pred, net, meta, evaluator, final, pool, world, rank)
