"""KFP component `pretrain`: masked-autoencoder pretraining of the ViT encoder (steps.pretrain), on a GPU."""

from components import CUDA_IMAGE, step_component
from renalmae.steps import declaration

pretrain = step_component(declaration("pretrain"), CUDA_IMAGE)
