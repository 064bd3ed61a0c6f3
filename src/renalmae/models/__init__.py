"""Models: the MAE, the ViT classifier and the CNN baseline, built from params by one factory.

Public API: `create_model`, `model_spec`, `build_from_spec` (factory); `MaskedAutoencoderViT` (mae);
`load_init_checkpoint`, `encoder_state_dict`, `load_encoder_into_vit`, `LoadReport` (checkpoints);
`save_trained_model`, `load_trained_model`, `save_encoder`, `load_encoder` (trained);
`to_model_input`, `GREY_MEAN`, `GREY_STD` (preprocess).
"""

from renalmae.models.checkpoints import (
    LoadReport,
    encoder_state_dict,
    load_encoder_into_vit,
    load_init_checkpoint,
)
from renalmae.models.factory import MODEL_KINDS, build_from_spec, create_model, model_spec
from renalmae.models.mae import MaskedAutoencoderViT
from renalmae.models.preprocess import GREY_MEAN, GREY_STD, from_model_input, to_model_input
from renalmae.models.trained import load_encoder, load_trained_model, save_encoder, save_trained_model

__all__ = [
    "GREY_MEAN",
    "GREY_STD",
    "MODEL_KINDS",
    "LoadReport",
    "MaskedAutoencoderViT",
    "build_from_spec",
    "create_model",
    "encoder_state_dict",
    "from_model_input",
    "load_encoder",
    "load_encoder_into_vit",
    "load_init_checkpoint",
    "load_trained_model",
    "model_spec",
    "save_encoder",
    "save_trained_model",
    "to_model_input",
]
