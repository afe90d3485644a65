"""Detection metrics: COCO AP/AR (identical to pycocotools), PASCAL VOC AP, proposal recall."""

from pydetect.eval.coco import COCO_STAT_NAMES, coco_evaluate
from pydetect.eval.voc import proposal_recall, voc_ap, voc_evaluate

__all__ = ["coco_evaluate", "COCO_STAT_NAMES", "voc_evaluate", "voc_ap", "proposal_recall"]
