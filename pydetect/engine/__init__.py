"""The CNN training layer every CNN detector (R-CNN family, OverFeat, YOLO, SSD) is built on.

- :mod:`~pydetect.engine.inputs`: dataset checks, images and crops as normalised tensors;
- :mod:`~pydetect.engine.augment`: the detectors' ``augment`` parameter, on
  :mod:`pydetect.data.transforms`;
- :mod:`~pydetect.engine.crops` and :mod:`~pydetect.engine.pretrain`: crop pretraining of a
  backbone (the offline analogue of ImageNet pretraining);
- :mod:`~pydetect.engine.loop`: the training loop (AdamW, warm-up + cosine schedule bounded by
  iterations and seconds, weight averaging, DDP);
- :mod:`~pydetect.engine.checkpoint`: safe checkpoints and resume;
- :mod:`~pydetect.engine.devices`: threads, devices and torchrun's process group;
- :mod:`~pydetect.engine.proposals`: region proposals cached with the checkpoints.

:mod:`pydetect.models` holds the torch parts these train; :mod:`pydetect.detectors` composes both.
"""

from pydetect.engine.augment import DEFAULT_AUGMENT, build_augmentation, check_augment
from pydetect.engine.checkpoint import load_checkpoint, restoring, save_checkpoint
from pydetect.engine.crops import extract_crops
from pydetect.engine.devices import distributed_info, resolve_device, torch_threads
from pydetect.engine.inputs import check_detection_dataset, crops_to_tensor, image_to_tensor
from pydetect.engine.loop import WeightAverage, check_ema_decay, lr_factor, train_loop
from pydetect.engine.pretrain import pretrain_backbone, pretrain_detector_backbone
from pydetect.engine.proposals import cached_proposals

__all__ = [
    "DEFAULT_AUGMENT", "build_augmentation", "check_augment", "load_checkpoint", "restoring", "save_checkpoint",
    "extract_crops", "distributed_info", "resolve_device", "torch_threads", "check_detection_dataset",
    "crops_to_tensor", "image_to_tensor", "WeightAverage", "check_ema_decay", "lr_factor", "train_loop",
    "pretrain_backbone", "pretrain_detector_backbone", "cached_proposals",
]
