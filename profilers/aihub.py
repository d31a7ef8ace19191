"""Qualcomm AI Hub profiler: Snapdragon phones hosted by Qualcomm, reached with its client ``qai-hub``.

Each unit is exported to ONNX here (:func:`profilers.formats.convert.export_onnx`, opset 20, fp32 input
``input``), compiled by AI Hub for the device entry's ``target_runtime`` (LiteRT / TFLite by default; QNN and
ONNX Runtime too) and profiled on the hosted phone: ``rounds x runs`` (default 7 x 20 = 140)
timed inferences, summarised like local runs, and the layers' compute units (NPU, GPU, CPU) as the table's
``compute_units`` column. Many units are in flight at once (``--max-jobs``), every job id is written to a ledger
beside the table as soon as it is submitted (:mod:`profilers.transports.aihub`), so a killed run never pays for a
job twice: a rerun collects what finished meanwhile and times only what the table lacks.

    pip install "effv2-nas[aihub]" && qai-hub configure --api_token TOKEN     # once
    python -m profilers.aihub --device galaxy-s24 --dry-run      # the jobs it would submit, no network call
    python -m profilers.aihub --device galaxy-s24                # the table, resumable

A unit AI Hub cannot compile or profile is logged with its job id and AI Hub's message and left out of the
table (``--retry-failed`` submits it again); the others are kept.
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from nas.core.cli import command, positive_int
from nas.core.values import TEXT, one_of, setting

from profilers.formats.convert import export_onnx
from profilers.plugin.base import Profiler
from profilers.plugin.cli import build_parser, run_cli, run_options, run_target, user_errors
from profilers.plugin.options import OptionsError, RuntimeOptions
from profilers.runtimes import UnitFailed, register_runtime
from profilers.tables.meta import TableMeta
from profilers.tables.table import existing_keys
from profilers.timing.protocol import LatencyStats
from profilers.transports import aihub as hub

__all__ = ["AIHubProfiler", "AIHubOptions", "main"]

log = logging.getLogger(__name__)

#: AI Hub's ``--compute_unit`` profile option
COMPUTE_UNITS = ("npu", "gpu", "cpu", "all")
#: timed inferences per protocol round, when the protocol does not fix ``runs``
RUNS_PER_ROUND = 20
#: units in flight on AI Hub at once by default (benchmarks/device_plan.py: enough for a whole-space table within
#: 30 minutes at its assumed job times)
MAX_JOBS = 16
#: seconds between two reads of a job's status (qai-hub's own ``Job.wait`` polls every 10 s)
POLL_S = 10.0


@dataclass(frozen=True)
class AIHubOptions(RuntimeOptions):
    """The hosted device (AI Hub's name and OS) and how AI Hub compiles and profiles for it."""
    hub_device: str | None = setting(None, TEXT, optional=True, help="AI Hub's device name (qai-hub list-devices)")
    hub_os: str | None = setting(None, TEXT, optional=True,
                                 help="the device's OS on AI Hub (unset: the table's, else the latest AI Hub has)")
    target_runtime: str = setting("tflite", one_of(hub.TARGET_RUNTIMES), help="what AI Hub compiles the unit for",
                                  flag="--target-runtime")
    compute_unit: str | None = setting(None, one_of(COMPUTE_UNITS), optional=True, flag="--compute-unit",
                                       help="AI Hub's --compute_unit profile option (unset: the target runtime's "
                                            "choice, NPU first)")

    def check(self) -> None:
        if not self.hub_device:
            raise OptionsError("hub_device is required: AI Hub's name of the device (qai-hub list-devices)")


@register_runtime
class AIHubProfiler(Profiler):
    name = "aihub"
    aliases = ("qai-hub",)
    suffix = ".onnx"
    Options = AIHubOptions

    def __init__(self, *a, max_jobs: int = MAX_JOBS, retry_failed: bool = False, poll_s: float | None = None,
                 client=None, **kw):
        super().__init__(*a, **kw)
        self.max_jobs, self.retry_failed = int(max_jobs), bool(retry_failed)
        self.poll_s = float(POLL_S if poll_s is None else poll_s)
        self._client, self._device = client, None
        self.ledger: Path | None = None
        self._os = self.options.hub_os or ""

    # -- set-up ---------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Units handed to AI Hub at once: enough to keep ``max_jobs`` busy, few enough that rows reach the
        table as they finish."""
        return 4 * self.max_jobs

    @classmethod
    def how_to_measure(cls, device) -> str:
        return (f'pip install "effv2-nas[aihub]", qai-hub configure --api_token TOKEN, then python -m '
                f'profilers.aihub --device {device.name}')

    @classmethod
    def add_arguments(cls, ap):
        ap.add_argument("--max-jobs", type=positive_int, default=MAX_JOBS, help="units in flight on AI Hub at once "
                                                                          "(default: %(default)s)")
        ap.add_argument("--retry-failed", action="store_true", help="submit again the units whose jobs failed "
                                                                    "in an earlier run")
        ap.add_argument("--dry-run", action="store_true", help="say which jobs a run would submit and exit (no "
                                                               "network call)")

    @classmethod
    def arguments(cls, args):
        return {"max_jobs": args.max_jobs, "retry_failed": args.retry_failed}

    @classmethod
    def for_table(cls, meta: TableMeta, threads: int | None = None) -> "AIHubProfiler":
        """Set up as the table was measured, on the OS its rows came from."""
        prof = super().for_table(meta, threads)
        prof._os = prof._os or str((meta.host or {}).get("os_version") or "")
        return prof

    def client(self):
        if self._client is None:
            self._client = hub.check_ready()
        return self._client

    def hub_device(self) -> hub.AIHubDevice:
        """The hosted device, looked up once (its OS: the entry's, else the one the table was measured on, else
        the latest)."""
        if self._device is None:
            d = hub.resolve_device(self.options.hub_device, self._os, client=self.client())
            if not self._os and d.os_version:       # pinned: every job of the table on that OS, also later ones
                self._os = d.os_version
                d = hub.resolve_device(self.options.hub_device, self._os, client=self.client())
            self._device = d
        return self._device

    def check_ready(self) -> None:
        self.hub_device()

    def writes_to(self, path: Path) -> None:
        self.ledger = hub.ledger_path(path)
        meta = TableMeta.read(path) if Path(path).exists() else None
        recorded = (meta.host or {}).get("os_version") if meta is not None else None
        if not self.options.hub_os and recorded and self._device is None:
            self._os = str(recorded)                # rows of one table come from one OS
        elif recorded and self._device is not None and self._device.os_version != recorded:
            log.warning("%s was measured on %s %s; AI Hub now runs %s: pin hub_os in the device entry to keep "
                        "one OS per table", path, self.options.hub_device, recorded, self._device.os_version)

    def runtime_version(self) -> str:
        try:
            return f"{self.options.target_runtime} on Qualcomm AI Hub (qai-hub {hub.client_version()})"
        except Exception:               # noqa: BLE001  (qai-hub missing: check_ready says so)
            return f"{self.options.target_runtime} on Qualcomm AI Hub"

    def settings(self) -> dict:
        return {**super().settings(), "converter": "torch.onnx (opset 20), compiled by AI Hub",
                "connection": self.device.connection_type, "profile_options": self.profile_options()}

    def profile_options(self) -> str:
        p = self.protocol
        opts = f"--max_profiler_iterations {p.rounds * (p.runs or RUNS_PER_ROUND)}"
        return opts + (f" --compute_unit {self.options.compute_unit}" if self.options.compute_unit else "")

    def table_meta(self, space_name: str, img_size: int, num_classes: int) -> TableMeta:
        meta = super().table_meta(space_name, img_size, num_classes)
        facts = hub.table_meta(self.hub_device(), self.options.target_runtime, client_version=hub.client_version(),
                               ledger=self.ledger.name if self.ledger else None)
        return meta.replace(host=facts)

    # -- measuring ------------------------------------------------------------------------------------
    def export(self, module, input_shape, path):
        return export_onnx(module, input_shape, path, quiet=self.quiet)

    def load(self, path, input_shape):             # timed on AI Hub, never here
        return None

    def measure(self, path, input_shape) -> LatencyStats:
        stats, failures = self.measure_batch({Path(path).stem: (Path(path), input_shape)})
        if failures:
            raise UnitFailed(next(iter(failures.values())))
        return next(iter(stats.values()))

    def measure_batch(self, paths):
        if self.ledger is None:
            raise RuntimeError("AIHubProfiler.measure_batch before writes_to(): the job ledger has no place")
        stems = {Path(p).stem: k for k, (p, _) in paths.items()}   # short, file-safe names for jobs and the ledger
        run = hub.submit_all({Path(p).stem: p for p, _ in paths.values()}, self.hub_device(), self.ledger,
                             max_jobs=self.max_jobs, target_runtime=self.options.target_runtime,
                             profile_options=self.profile_options(),
                             input_specs={Path(p).stem: {"input": (tuple(shape), "float32")}
                                          for p, shape in paths.values()},
                             retry_failed=self.retry_failed, poll_s=self.poll_s, client=self.client(),
                             progress=False)
        stats = {stems[k]: r.stats(self.protocol.rounds).with_compute(r.compute_units)
                 for k, r in run.results.items()}
        failures = {stems[k]: f"{o.failed_stage} job {o.failed_job_id or '(not submitted)'}: {o.error}"
                    for k, o in run.failures.items()}
        return stats, failures


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def dry_run(argv) -> int:
    """``--dry-run``: the units the table lacks and the jobs a run would submit for them (the ledger's jobs
    are collected, not submitted again), with no network call and no export."""
    ap = build_parser(AIHubProfiler)
    args = ap.parse_args(argv)
    with user_errors():
        target = run_target(AIHubProfiler, ap, args)
        out = target.out
        options = run_options(AIHubProfiler, target.device, args)
        have = existing_keys(out)
        todo = [s.key for s in target.shard_specs if s.key not in have][:args.limit]
        prof = AIHubProfiler(target.device, options=options, max_jobs=args.max_jobs)
        run = hub.submit_all(dict.fromkeys(todo, ""), options.hub_device, hub.ledger_path(out), dry_run=True,
                             target_runtime=options.target_runtime, profile_options=prof.profile_options(),
                             retry_failed=args.retry_failed)
    plan = run.plan
    rounds = math.ceil(plan["compile_jobs"] / max(1, args.max_jobs)) if plan["compile_jobs"] else 0
    print(f"{out}: {len(have)} unit(s) present, {len(todo)} to measure on {options.hub_device} "
          f"({options.target_runtime}); would submit {plan['compile_jobs']} compile and {plan['profile_jobs']} "
          f"profile job(s), {args.max_jobs} unit(s) at a time ({rounds} wave(s)); collect {plan['collect']} "
          f"from earlier runs; {plan['failed_kept']} failed before (--retry-failed submits them again)")
    return 0


@command
def main(argv=None) -> int:
    """``python -m profilers.aihub --device NAME [--dry-run] [--max-jobs N]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--dry-run" in argv:
        return dry_run(argv)
    return run_cli(AIHubProfiler, argv)


if __name__ == "__main__":
    raise SystemExit(main())
