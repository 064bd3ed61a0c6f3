"""KFP component `pretrain`: masked-autoencoder pretraining of the ViT encoder (steps.pretrain), on a GPU."""

from components import CUDA_IMAGE, step_component
from renalmae.steps import pretrain as step

pretrain = step_component(step.STEP, CUDA_IMAGE)
