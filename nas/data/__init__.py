"""Image data for training and evaluating the supernet: the offline Fashion-MNIST / MNIST sets and image
folders (:mod:`.datasets`)."""
from nas.data.datasets import DatasetMissing, ImageSet, load_dataset

__all__ = ["DatasetMissing", "ImageSet", "load_dataset"]
