"""torch building blocks of the CNN detectors: the R-CNN family (RCNN, FastRCNN, FasterRCNN), OverFeat,
YOLO and SSD.

Backbones (:class:`VGGStyle`, :class:`ResNet18Style`, :class:`FPN`), anchors (and their
shapes clustered from the training boxes, :func:`kmeans_anchors`), the Region
Proposal Network, the RoI heads, the box coder / matcher / balanced sampler they share, and the
one-stage networks (:class:`YOLOv1Net`, :class:`YOLONet`, :class:`SSDNet` on :class:`DenseDetector`).
Any torch module returning a dict of feature maps and having ``out_channels`` (e.g. a
torchvision backbone, if you have it and its weights) can replace the backbones;
:func:`from_torchvision` turns a torchvision Faster R-CNN into a pydetect network computing the same.
"""

from pydetect.models.anchors import AnchorGenerator
from pydetect.models.backbones import (IMAGE_MEAN, IMAGE_STD, IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_BACKBONES,
                                       CropClassifier, ResNet18Style, VGGStyle, build_backbone, load_backbone_weights)
from pydetect.models.fpn import FPN, BackboneWithFPN
from pydetect.models.box_coder import BoxCoder
from pydetect.models.dense import DenseDetector
from pydetect.models.generalized_rcnn import GeneralizedRCNN
from pydetect.models.kmeans import kmeans_anchors, shape_iou
from pydetect.models.matching import BalancedSampler, Matcher
from pydetect.models.mobilenet import MobileNetV3Features, mobilenet_v3_fpn_backbone, mobilenet_v3_large_features
from pydetect.models.overfeat import OverFeatNet
from pydetect.models.resnet import FrozenBatchNorm2d, ResNet, load_weights, resnet, resnet_fpn_backbone
from pydetect.models.roi_heads import FastRCNNPredictor, RoIHeads, RoIPooler, TwoMLPHead, fastrcnn_loss
from pydetect.models.rpn import RegionProposalNetwork, RPNHead, smooth_l1
from pydetect.models.ssd import SSDNet
from pydetect.models.torchvision_compat import from_torchvision
from pydetect.models.yolo import YOLONet, YOLOv1Net

__all__ = [
    "AnchorGenerator", "VGGStyle", "ResNet18Style", "FPN", "BackboneWithFPN", "CropClassifier",
    "BoxCoder", "Matcher", "BalancedSampler", "RPNHead", "RegionProposalNetwork", "smooth_l1",
    "TwoMLPHead", "FastRCNNPredictor", "RoIHeads", "RoIPooler", "fastrcnn_loss", "GeneralizedRCNN",
    "OverFeatNet", "kmeans_anchors", "shape_iou", "DenseDetector", "YOLOv1Net", "YOLONet", "SSDNet",
    "ResNet", "resnet", "FrozenBatchNorm2d", "resnet_fpn_backbone", "load_weights",
    "MobileNetV3Features", "mobilenet_v3_large_features", "mobilenet_v3_fpn_backbone",
    "IMAGE_MEAN", "IMAGE_STD", "IMAGENET_MEAN", "IMAGENET_STD", "TORCHVISION_BACKBONES", "build_backbone",
    "load_backbone_weights", "from_torchvision",
]
