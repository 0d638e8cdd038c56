"""PICI's network (SPEC P2): a ViT encoder over the visible patches of a randomly masked image, an MAE decoder,
and the instance / cluster projection heads on the [CLS] output.

Built from timm's `Block` and `PatchEmbed`; fixed 2-D sin-cos position embeddings (timm's
`build_sincos2d_pos_embed`) or learned ones; CLS is prepended after masking (MAE). `mask_ratio=0` keeps every
patch in its order and draws no random numbers, so evaluation is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn


@dataclass
class Encoded:
    tokens: torch.Tensor         # (B, 1 + K, D): CLS then the K visible patch tokens, after the final norm
    keep: torch.Tensor           # (B, K) indices of the visible patches
    restore: torch.Tensor        # (B, L) inverse permutation that puts [visible, masked] back in patch order
    mask: torch.Tensor           # (B, L) 1 = masked (reconstruction target), 0 = visible

    @property
    def cls(self) -> torch.Tensor:
        return self.tokens[:, 0]


def random_masking(batch: int, num_patches: int, mask_ratio: float, device) -> tuple[torch.Tensor, ...]:
    """Per-sample uniform masking (MAE): keep int(L·(1−r)) patches chosen by the argsort of U(0,1) noise."""
    n_keep = int(num_patches * (1 - mask_ratio))
    if mask_ratio <= 0:
        shuffle = torch.arange(num_patches, device=device).expand(batch, -1)
    else:
        shuffle = torch.argsort(torch.rand(batch, num_patches, device=device), dim=1)
    restore = torch.argsort(shuffle, dim=1)
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :n_keep] = 0
    return shuffle[:, :n_keep], restore, torch.gather(mask, 1, restore)


def _gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class MaskedAutoencoderViT(nn.Module):
    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 384,
                 depth: int = 6, num_heads: int = 12, decoder_embed_dim: int = 512, decoder_depth: int = 8,
                 decoder_num_heads: int = 16, mlp_ratio: float = 4.0, norm_pix_loss: bool = True,
                 pos_embed: str = "sincos"):
        super().__init__()
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.patch_size, self.in_chans, self.norm_pix_loss = patch_size, in_chans, norm_pix_loss
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        grid = self.patch_embed.grid_size
        self.num_patches = grid[0] * grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = self._pos_embed(grid, embed_dim, pos_embed)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = self._pos_embed(grid, decoder_embed_dim, pos_embed)
        self.decoder_blocks = nn.ModuleList(Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True,
                                                  norm_layer=norm) for _ in range(decoder_depth))
        self.decoder_norm = norm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * in_chans)
        self._init_weights()

    @staticmethod
    def _pos_embed(grid, dim: int, kind: str) -> nn.Parameter:
        """(1, 1 + L, dim); slot 0 (CLS) is zero for sin-cos, as in MAE."""
        table = torch.zeros(1, 1 + grid[0] * grid[1], dim)
        if kind == "sincos":
            table[0, 1:] = build_sincos2d_pos_embed(list(grid), dim)
            return nn.Parameter(table, requires_grad=False)
        return nn.Parameter(nn.init.trunc_normal_(table, std=0.02))

    def _init_weights(self) -> None:
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # --- pixels <-> patches -------------------------------------------------------------------------------
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, L, p·p·C), patches in row-major order, pixels (p, p, C) within a patch."""
        p, (gh, gw) = self.patch_size, self.patch_embed.grid_size
        x = imgs.reshape(imgs.shape[0], self.in_chans, gh, p, gw, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(imgs.shape[0], gh * gw, p * p * self.in_chans)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, (gh, gw) = self.patch_size, self.patch_embed.grid_size
        x = x.reshape(x.shape[0], gh, gw, p, p, self.in_chans)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], self.in_chans, gh * p, gw * p)

    # --- encoder / decoder --------------------------------------------------------------------------------
    def encode(self, imgs: torch.Tensor, mask_ratio: float) -> Encoded:
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        keep, restore, mask = random_masking(x.shape[0], self.num_patches, mask_ratio, x.device)
        x = _gather_tokens(x, keep)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return Encoded(self.norm(x), keep, restore, mask.to(x.dtype))

    def decode(self, enc: Encoded) -> torch.Tensor:
        """Per-patch pixel predictions (B, L, p·p·C) for every patch, in patch order."""
        x = self.decoder_embed(enc.tokens)
        b, n_vis = x.shape[0], x.shape[1] - 1
        fill = self.mask_token.expand(b, self.num_patches - n_vis, -1)
        patches = _gather_tokens(torch.cat([x[:, 1:], fill], dim=1), enc.restore)
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def reconstruction_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-patch MSE averaged over masked patches; targets per-patch normalised when norm_pix_loss."""
        target = _wide(self.patchify(imgs))
        if self.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        per_patch = (_wide(pred) - target).pow(2).mean(-1)
        mask = mask.to(per_patch.dtype)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def pixels(self, imgs: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Predictions mapped back to image space (undoing the per-patch normalisation with the input's stats)."""
        if self.norm_pix_loss:
            target = self.patchify(imgs).float()
            pred = pred.float() * (target.var(-1, keepdim=True) + 1e-6).sqrt() + target.mean(-1, keepdim=True)
        return self.unpatchify(pred)

    def forward(self, imgs: torch.Tensor, mask_ratio: float, decode: bool = True):
        """(Encoded, per-patch predictions or None). The one entry point, so ZeRO-3 gathers this module's own
        parameters (cls/mask tokens, position tables) around every use."""
        enc = self.encode(imgs, mask_ratio)
        return enc, (self.decode(enc) if decode else None)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 activations are upcast for the losses; float64 stays float64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class InstanceHead(nn.Module):
    """G_I: Linear–ReLU–Linear, L2-normalised output."""

    def __init__(self, dim: int, out_dim: int = 128, hidden: int = 0):
        super().__init__()
        hidden = hidden or dim
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(_wide(self.net(h)), dim=1)


class ClusterHead(nn.Module):
    """G_C: Linear–ReLU–Linear–Softmax over M clusters (softmax in float32 even under bf16)."""

    def __init__(self, dim: int, num_clusters: int, hidden: int = 0):
        super().__init__()
        hidden = hidden or dim
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_clusters))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return _wide(self.net(h)).softmax(dim=1)


class PICINet(nn.Module):
    """Encoder F + decoder D (the MAE), instance head G_I and cluster head G_C; init as in the reference MAE."""

    def __init__(self, num_clusters: int, instance_dim: int = 128, head_hidden: int = 0, **mae_kwargs):
        super().__init__()
        self.mae = MaskedAutoencoderViT(**mae_kwargs)
        dim = self.mae.cls_token.shape[-1]
        self.instance_head = InstanceHead(dim, instance_dim, head_hidden)
        self.cluster_head = ClusterHead(dim, num_clusters, head_hidden)
        for head in (self.instance_head, self.cluster_head):
            for m in head.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """encoder (F), decoder (D), instance_head (G_I), cluster_head (G_C); frozen tables left out."""
        m = self.mae
        dec = {"decoder_embed", "mask_token", "decoder_pos_embed", "decoder_blocks", "decoder_norm", "decoder_pred"}
        groups = {"encoder": [], "decoder": []}
        for name, p in m.named_parameters():
            if p.requires_grad:
                groups["decoder" if name.split(".")[0] in dec else "encoder"].append(p)
        groups["instance_head"] = list(self.instance_head.parameters())
        groups["cluster_head"] = list(self.cluster_head.parameters())
        return groups

    def forward(self, imgs: torch.Tensor, mask_ratio: float = 0.0, decode: bool = False,
                heads: bool = True) -> dict[str, torch.Tensor]:
        """h (CLS feature), z (instance feature), c (cluster probabilities); with decode, the MAE's per-patch
        predictions `pred` and the patch `mask` (1 = masked)."""
        enc, pred = self.mae(imgs, mask_ratio, decode)
        out = {"h": enc.cls, "mask": enc.mask}
        if pred is not None:
            out["pred"] = pred
        if heads:
            out["z"], out["c"] = self.instance_head(enc.cls), self.cluster_head(enc.cls)
        return out
