"""clipq_helpers: the helper package of the CLIP-Q course.

Post-training INT8 quantization of Chinese-CLIP, taught on a pocket model that runs offline.

Modules (one job each):
    quantize, calibrate, fakequant, smoothquant, int8   quantization math and layers
    contrastive, patches                                CLIP pieces learners re-implement
    shapes, text, processor, models, train, evaluate    the pocket model, its data and tiers
    surgery, outliers                                   hooks/model surgery, outlier reports
    plots                                               matplotlib with a CJK font
    grading                                             check() for the exercise notebooks
"""

__version__ = "0.1.0"
