"""Converters from a PyTorch module to each runtime's format (ONNX, LiteRT, Core ML): :mod:`.convert`,
shared by the runtime plugins and by :mod:`nas.export`."""
