"""luban.data: datasets, samplers and DataLoader with torch.utils.data's names and
semantics; ready-made datasets live in luban.data.datasets."""
from . import datasets
from .collate import default_collate, default_convert
from .dataloader import DataLoader
from .dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .fetch import WorkerInfo, get_worker_info
from .generator import Generator
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "Generator", "IterableDataset",
           "RandomSampler", "Sampler", "SequentialSampler", "Subset", "TensorDataset", "WorkerInfo",
           "datasets", "default_collate", "default_convert", "get_worker_info", "random_split"]
