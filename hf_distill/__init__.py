"""hf_distill: dataset distillation (APM) for Hugging Face image datasets.

Importing it registers hf_distill's small-input models with timm (convnet3, convnet4,
resnet18_small, vgg11_small, alexnet_small).
"""

from .apm import apm_loss
from .arguments import DistillationArguments
from .data import ImageClassificationData, load_image_dataset
from .distilled import DistilledSet, load_distilled
from .evaluation import PROTOCOLS, Protocol
from .export import export_teachers, push_teachers, save_distilled
from .hub import HubError
from .models import create_model
from .preprocessing import Preprocessing
from .records import EvalResults
from .scoring import evaluate_set
from .teachers import TeacherPool
from .trainer import DistillationTrainer

__version__ = "0.1.0"

__all__ = ["PROTOCOLS", "DistillationArguments", "DistillationTrainer", "DistilledSet", "EvalResults", "HubError",
           "ImageClassificationData", "Preprocessing", "Protocol", "TeacherPool", "apm_loss", "create_model",
           "evaluate_set", "export_teachers", "load_distilled", "load_image_dataset", "push_teachers", "save_distilled"]
