"""Export a chosen subnet as a standalone network (PyTorch, ONNX, TFLite, Core ML), each checked against
the supernet's logits (:mod:`.subnet`)."""
from nas.export.subnet import FORMATS, ExportError, export_subnet, load_exported

__all__ = ["FORMATS", "ExportError", "export_subnet", "load_exported"]
