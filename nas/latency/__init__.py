"""Latency: the table-based predictor (:mod:`.predictor`), its calibration on whole networks
(:mod:`.calibration` the model, :mod:`.calibrate` the measuring and fitting), where a target's table lives
and whether it describes this host (:mod:`.tables`, :mod:`.local_tables`), measuring whole networks
(:mod:`.measure`) and validation against them (:mod:`.validation`).

Other NAS projects use the predictor directly::

    from nas.latency import LatencyPredictor
    pred = LatencyPredictor.from_table("local-cpu")
    pred.predict(arch); pred.predict_many(space.sample_encoded(100_000))
"""
from nas.latency.calibration import Calibration, CalibrationError
from nas.latency.predictor import LatencyPredictor, MissingLatencyError
from nas.latency.tables import ForeignTableError, resolve_table, verify_host

__all__ = ["Calibration", "CalibrationError", "LatencyPredictor", "MissingLatencyError", "ForeignTableError",
           "resolve_table", "verify_host"]
