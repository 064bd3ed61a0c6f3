"""Masked autoencoder (MAE, He et al. 2022) whose encoder is a plain timm `VisionTransformer`.

Read it like facebookresearch/mae `models_mae.py`: `random_masking`, `forward_encoder`,
`forward_decoder`, `forward_loss`, `forward`. Decisions:

- `self.encoder` IS a timm `VisionTransformer` (num_classes=0, `global_pool="avg"`, `fc_norm=False`),
  built by `renalmae.models.factory` from the same kwargs as the fine-tuned classifier. So its state
  dict (`encoder_state_dict`) loads into the classifier key for key; only the new `head` is missing.
  The final `norm` is applied to every token before average pooling (as the MAE encoder does), so
  pretraining and fine-tuning see the same normalised tokens.
- Greyscale: the patch embedding has `in_chans=1`; the pixel target has `patch_size**2` values per patch.
- Position embeddings (encoder and decoder) are fixed 2-D sin-cos tables (`requires_grad=False`), with
  a zero row for the class token, exactly as in MAE. The classifier later fine-tunes them.
- Compile / bf16 friendly: no data-dependent Python control flow in `forward`; the number of visible
  tokens is a Python int computed from the (static) mask ratio; attention is timm's fused
  `F.scaled_dot_product_attention` path; the loss is computed in fp32.
"""

from __future__ import annotations

import torch
from timm.layers import LayerNorm
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn

from renalmae.errors import ModelError


def sincos_pos_embed(embed_dim: int, grid_size: int, cls_token: bool = True) -> Tensor:
    """MAE's fixed 2-D sin-cos position table, `[1, (1 +) grid_size**2, embed_dim]` (class token row = 0)."""
    if embed_dim % 4:
        raise ModelError(f"embed_dim {embed_dim} must be divisible by 4 for 2-D sin-cos position embeddings")
    coords = torch.arange(grid_size, dtype=torch.float64)
    grid_w, grid_h = torch.meshgrid(coords, coords, indexing="xy")  # MAE: np.meshgrid(grid_w, grid_h)
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4))

    def embed_1d(positions: Tensor) -> Tensor:
        angles = positions.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([embed_1d(grid_w), embed_1d(grid_h)], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, embed_dim, dtype=table.dtype), table], dim=0)
    return table.float().unsqueeze(0)


class MaskedAutoencoderViT(nn.Module):
    """MAE with a timm ViT encoder and a light transformer decoder that predicts the masked pixels."""

    def __init__(
        self,
        encoder: VisionTransformer,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = True,
        mask_ratio: float = 0.75,
    ):
        super().__init__()
        _check_encoder(encoder)
        if not 0.0 < mask_ratio < 1.0:
            raise ModelError(f"mae.mask_ratio must be strictly between 0 and 1 (got {mask_ratio})")
        if decoder_embed_dim % decoder_num_heads:
            raise ModelError(
                f"mae.decoder_embed_dim {decoder_embed_dim} must be divisible by "
                f"mae.decoder_num_heads {decoder_num_heads}"
            )
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.in_chans = encoder.in_chans
        self.grid_size = encoder.patch_embed.grid_size[0]
        num_patches = encoder.patch_embed.num_patches
        embed_dim = encoder.embed_dim

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False
        )
        self.decoder_blocks = nn.Sequential(
            *[
                Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm)
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = LayerNorm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.patch_size**2 * self.in_chans)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE's initialisation: fixed sin-cos tables, xavier-uniform linears and patch projection."""
        self.encoder.pos_embed.requires_grad_(False)
        with torch.no_grad():
            self.encoder.pos_embed.copy_(sincos_pos_embed(self.encoder.embed_dim, self.grid_size))
            self.decoder_pos_embed.copy_(sincos_pos_embed(self.decoder_pos_embed.shape[-1], self.grid_size))
        self.apply(_init_module)
        proj = self.encoder.patch_embed.proj.weight
        nn.init.xavier_uniform_(proj.view(proj.shape[0], -1))
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, imgs: Tensor) -> Tensor:
        """`[B, C, H, W]` → `[B, L, p*p*C]` (MAE's patch layout, so published decoders stay compatible)."""
        p, c, h = self.patch_size, self.in_chans, self.grid_size
        x = imgs.reshape(imgs.shape[0], c, h, p, h, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(imgs.shape[0], h * h, p * p * c)

    def unpatchify(self, x: Tensor) -> Tensor:
        """`[B, L, p*p*C]` → `[B, C, H, W]`; the inverse of `patchify`."""
        p, c, h = self.patch_size, self.in_chans, self.grid_size
        x = x.reshape(x.shape[0], h, h, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, h * p)

    def random_masking(
        self, x: Tensor, mask_ratio: float, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Keep a random `1 - mask_ratio` of the tokens of each sample (per-sample shuffle by noise argsort).

        `noise` `[B, L]` in [0, 1) decides which tokens are kept (drawn here when None); data-parallel
        training passes each rank its slice of the global batch's noise. Returns the kept tokens
        `[B, L_keep, D]`, the binary mask `[B, L]` (1 = removed) and the permutation that restores the
        original order.
        """
        batch, length, dim = x.shape
        len_keep = int(length * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(batch, length, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        mask = torch.ones(batch, length, device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_kept, mask, ids_restore

    def forward_encoder(
        self, imgs: Tensor, mask_ratio: float, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        encoder = self.encoder
        x = encoder.patch_embed(imgs) + encoder.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)
        cls_token = encoder.cls_token + encoder.pos_embed[:, :1, :]
        x = torch.cat([cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = encoder.norm_pre(x)
        x = encoder.blocks(x)
        return encoder.norm(x), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        x = self.decoder_embed(latent)
        num_masked = ids_restore.shape[1] + 1 - x.shape[1]
        mask_tokens = self.mask_token.to(x.dtype).expand(x.shape[0], num_masked, -1)
        patches = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1, :], patches], dim=1) + self.decoder_pos_embed
        x = self.decoder_blocks(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]

    def forward_loss(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error on the removed patches only (per-patch normalised target if norm_pix_loss)."""
        target = self.patchify(imgs).float()
        if self.norm_pix_loss:
            target = _normalise_patches(target)
        loss = (pred.float() - target).pow(2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(
        self, imgs: Tensor, mask_ratio: float | None = None, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return `(loss, pred [B, L, p*p*C], mask [B, L])`; `mask_ratio` defaults to the model's,
        `noise` (see `random_masking`) to a fresh draw."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.forward_encoder(imgs, ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    @torch.no_grad()
    def reconstruction_images(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """The images of an MAE figure, each `[B, C, H, W]` in model-input units.

        `original`; `masked` (removed patches set to the image minimum); `reconstruction` (the
        prediction of every patch); `pasted` (visible patches from the original, removed ones predicted).
        With norm_pix_loss the prediction is per-patch normalised; it is mapped back with each patch's
        own mean and std, which is for display only (it borrows the statistics of the hidden patches).
        """
        target = self.patchify(imgs).float()
        pred = pred.float()
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1.0e-6).sqrt()
            pred = pred * std + mean
        patch_mask = mask.unsqueeze(-1).float()
        floor = target.amin(dim=(1, 2), keepdim=True)
        return {
            "original": imgs.float(),
            "masked": self.unpatchify(target * (1 - patch_mask) + floor * patch_mask),
            "reconstruction": self.unpatchify(pred),
            "pasted": self.unpatchify(target * (1 - patch_mask) + pred * patch_mask),
        }


def _normalise_patches(patches: Tensor) -> Tensor:
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1.0e-6) ** 0.5


def _init_module(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _check_encoder(encoder: nn.Module) -> None:
    """The MAE forward relies on a plain ViT layout: one class token, a square grid, absolute positions."""
    if not isinstance(encoder, VisionTransformer):
        raise ModelError(f"the MAE encoder must be a timm VisionTransformer, got {type(encoder).__name__}")
    grid = encoder.patch_embed.grid_size
    if (
        encoder.num_prefix_tokens != 1
        or not encoder.has_class_token
        or encoder.no_embed_class
        or encoder.pos_embed is None
        or encoder.dynamic_img_size
        or grid[0] != grid[1]
    ):
        raise ModelError(
            "encoder.arch must be a plain ViT (one class token, learned absolute position embedding, "
            "square image); pick e.g. vit_tiny_patch16_224, vit_small_patch16_224 or vit_base_patch16_224"
        )
