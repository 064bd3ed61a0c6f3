"""KFP component `finetune`: fine-tune the pretrained ViT on one fold of one task (steps.finetune)."""

from components import CUDA_IMAGE, step_component
from renalmae.steps import declaration

finetune = step_component(declaration("finetune"), CUDA_IMAGE)
