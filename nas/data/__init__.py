"""Image data for training and evaluating the supernet: the offline Fashion-MNIST / MNIST sets held in
memory (:mod:`.datasets`), image folders of any size read lazily (:mod:`.folder`), ImageNet-style
transforms (:mod:`.transforms`) and the data-loader batches of training and evaluation (:mod:`.loader`)."""
from nas.data.datasets import DatasetMissing, ImageSet, ShardedOrder, load_dataset
from nas.data.folder import ImageFolder, open_dataset, scan_folder
from nas.data.loader import StepSampler, TrainStream, UnreadableBatch, default_workers, eval_batches
from nas.data.transforms import EvalTransform, Mixup, RandAugment, TrainTransform

__all__ = ["DatasetMissing", "ImageSet", "ShardedOrder", "load_dataset", "ImageFolder", "open_dataset",
           "scan_folder", "StepSampler", "TrainStream", "UnreadableBatch", "default_workers", "eval_batches",
           "EvalTransform", "Mixup", "RandAugment", "TrainTransform"]
