"""What the short learning checks share.

``CHECK_AUGMENT`` is the augmentation every learning check trains with: the CNN detectors'
default (:data:`pydetect.engine.DEFAULT_AUGMENT`) without the random colour turns. The checks'
floors were measured with it (benchmarks/RESULTS.md, "honest numbers"). The turns are chosen
for models trained at the full budget, where they make unseen ink colours detectable; on the
80 images and 8 pretraining epochs of the short FasterRCNN check they slow the crop
pretraining so much (crop accuracy 0.54 instead of 0.89, AP50 0.085 instead of 0.287,
2026-12-03) that the check would no longer tell a working detector from a broken one
(0.043 with a planted bug). A check is there to fail when the pipeline breaks, so it keeps
the recipe that learns in its budget.
"""

CHECK_AUGMENT = {"recolour": 0.0}
