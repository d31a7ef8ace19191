"""Supernet checkpoints: written atomically, self-describing (space, image size, classes)."""
from __future__ import annotations

from pathlib import Path

import torch

from nas.core.errors import UserError
from nas.core.files import atomic_open, parsing
from nas.space.spaces import SearchSpace, get_space
from nas.supernet.supernet import SlimmableSupernet

__all__ = ["atomic_save", "checkpoint_file", "checkpoint_space", "load_checkpoint", "load_supernet", "supernet_meta",
           "safe_load", "CheckpointError"]


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used: missing, not a checkpoint, or holding objects other than tensors
    and plain data (refused before anything in it runs)."""


def _numpy_globals() -> list:
    """The numpy constructors an RNG state in a checkpoint needs: they build arrays and nothing else."""
    import numpy as np
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:                                   # numpy < 2
        from numpy.core.multiarray import _reconstruct
    dtypes = [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64, np.float32, np.bool_)]
    return [_reconstruct, np.ndarray, np.dtype, *dtypes]


def safe_load(path: str | Path, what: str = "checkpoint") -> dict:
    """``torch.load`` with ``weights_only=True``: tensors, plain containers and numbers only (plus numpy
    arrays for RNG states). A file whose pickle would construct anything else, such as a call to
    ``os.system``, is refused with :class:`CheckpointError` before any of it runs."""
    import pickle
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {what} at {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a {what} this tool can load safely: it holds objects other than "
                              f"tensors and plain data, which are never executed ({first})") from None
    except Exception as e:                   # a torn or foreign file: the unpickler fails in many ways
        raise CheckpointError(f"{path} is not a readable {what} ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a {what}: expected a dict, found {type(obj).__name__}")
    return obj


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` atomically (:func:`nas.core.files.atomic_open`): a kill at any moment leaves either
    the old checkpoint or the new one, never a torn file."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def supernet_meta(net: SlimmableSupernet, **extra) -> dict:
    return {"space": net.space.to_dict(), "space_name": net.space.name, "img_size": net.img_size,
            "num_classes": net.num_classes, "distillation": net.head_dist is not None, **extra}


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a path names: ``path/last.pt`` for a run folder (or a suffix-less path that does
    not exist yet, a run folder to be), else the path itself."""
    p = Path(path)
    return p / "last.pt" if p.is_dir() or (not p.exists() and not p.suffix) else p


def load_checkpoint(path: str | Path) -> dict:
    """A supernet checkpoint (a file, or a run folder holding ``last.pt``): its ``model`` weights and ``meta``
    (space, image size, classes) at least. :class:`CheckpointError` saying what the file is otherwise (one
    network's weights are to be given to training with ``--init-from``)."""
    path = checkpoint_file(path)
    if not path.exists():
        raise CheckpointError(f"no supernet checkpoint at {path}; train one with python -m nas.train_supernet "
                              f"--out {path.parent if path.name == 'last.pt' else path}")
    ck = safe_load(path, "supernet checkpoint")
    if isinstance(ck.get("meta"), dict) and isinstance(ck.get("model"), dict):
        return ck
    weights = ck.get("model", ck.get("state_dict", ck))
    if isinstance(weights, dict) and weights and all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path} holds one network's weights (a state dict of {len(weights)} tensors), not a "
                              f"supernet checkpoint: to start a supernet from them, train one with --init-from "
                              f"{path}; to search, give a supernet checkpoint or run folder (python -m "
                              f"nas.train_supernet writes one)")
    raise CheckpointError(f"{path} is not a supernet checkpoint (it lacks the 'model' weights and 'meta' that "
                          f"python -m nas.train_supernet writes)")


def checkpoint_space(meta: dict, source: str | Path = "checkpoint") -> SearchSpace:
    """The search space a checkpoint's metadata describes (its full description, else its name)."""
    with parsing(source, "supernet checkpoint", CheckpointError):
        if isinstance(meta.get("space"), dict):
            return SearchSpace.from_dict(meta["space"])
        return get_space(meta["space_name"])


def load_supernet(path: str | Path) -> tuple[SlimmableSupernet, dict]:
    """``(supernet, meta)`` from a checkpoint file (or a run folder holding ``last.pt``); the supernet is
    rebuilt from the space, image size and class count stored in the checkpoint, in eval mode."""
    ck = load_checkpoint(path)
    meta = ck["meta"]
    space = checkpoint_space(meta, checkpoint_file(path))
    with parsing(checkpoint_file(path), "supernet checkpoint", CheckpointError,
                 "it does not match the supernet its metadata describes"):
        net = SlimmableSupernet(space, num_classes=int(meta["num_classes"]), img_size=int(meta["img_size"]),
                                distillation=bool(meta.get("distillation", True)))
        try:
            net.load_state_dict(ck["model"])
        except RuntimeError as e:                 # missing, unexpected or misshapen tensors
            raise ValueError(str(e).splitlines()[0]) from None
    return net.eval(), {**meta, "step": ck.get("step")}
