"""Latency: the table-based predictor (:mod:`.predictor`) and its calibration on whole networks
(:mod:`.calibration` the model, :mod:`.calibration_run` measuring networks and fitting it), whole networks
measured end to end (:mod:`.networks`), validation against them (:mod:`.validation`) and this host's table
made on first use (:mod:`.first_use`). Tables themselves are :class:`profilers.tables.table.LatencyTable`.

Other NAS projects use the predictor directly (importing this package imports no torch)::

    from nas.latency import LatencyPredictor
    pred = LatencyPredictor.from_table("local-cpu")
    pred.predict(arch); pred.predict_many(space.sample_encoded(100_000))
"""
from nas.core.moved import moved
from nas.latency.calibration import Calibration, CalibrationError
from nas.latency.predictor import LatencyPredictor, MissingLatencyError
from profilers.tables.table import ForeignTableError, LatencyTable, locate

#: the name earlier versions gave :func:`profilers.tables.table.locate`
resolve_table = locate

__all__ = ["Calibration", "CalibrationError", "LatencyPredictor", "MissingLatencyError", "ForeignTableError",
           "LatencyTable", "resolve_table"]

moved({"nas.latency.calibrate": "nas.latency.calibration_run", "nas.latency.measure": "nas.latency.networks",
       "nas.latency.local_tables": "nas.latency.first_use", "nas.latency.tables": "profilers.tables.table"})
