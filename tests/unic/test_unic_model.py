"""UNIC's network (SPEC U2, U7-11): only the last block (+ final norm) and the head receive gradients."""
import timm
import torch

from dist_cluster.methods.unic.config import UnicConfig
from dist_cluster.methods.unic.model import build_head, efficientnet_lite0, vit_backbone

torch.set_num_threads(2)


def _grads(module):
    return {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_vit_last_block_and_final_norm_are_the_only_trained_backbone_parameters():
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, depth=3)
    bb = vit_backbone("", model=vit, train_blocks=1, train_final_norm=True)
    assert bb.embed_dim == 192
    bb.train()
    assert not vit.blocks[0].training and vit.blocks[2].training    # frozen trunk stays in eval mode
    x = torch.randn(4, 3, 32, 32)
    bb(x).square().sum().backward()
    trained = _grads(bb)
    assert trained and all(n.startswith("model.blocks.2.") or n.startswith("model.norm.") for n in trained)
    assert {n for n, p in bb.named_parameters() if p.requires_grad} == {n for n, _ in bb.named_parameters()
                                                                        if n.startswith(("model.blocks.2.",
                                                                                         "model.norm."))}
    # the embedding is timm's pre-logits CLS token after the final norm
    vit.eval()
    assert torch.allclose(bb(x), vit.forward_head(vit.forward_features(x), pre_logits=True), atol=1e-5)


def test_vit_frozen_norm_option_and_fully_frozen_backbone():
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, depth=2)
    bb = vit_backbone("", model=vit, train_blocks=1, train_final_norm=False)
    assert not any(p.requires_grad for p in vit.norm.parameters())
    frozen = vit_backbone("", model=timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, depth=2),
                          train_blocks=0)
    assert frozen.trainable_parameters() == [] and not frozen(torch.randn(2, 3, 32, 32)).requires_grad
    assert bb.trainable_parameters()


def test_efficientnet_last_stage_and_head_conv_train_and_match_the_pretrained_features():
    bb = efficientnet_lite0(train_blocks=1, image_size=64)
    net = bb.model
    x = torch.randn(2, 3, 64, 64)
    bb.eval()
    with torch.no_grad():
        want = net.extract_features(x).mean(dim=(2, 3))
    assert torch.allclose(bb(x), want, atol=1e-5)
    bb.train()
    bb(x).sum().backward()
    last = len(net._blocks) - 1
    assert _grads(bb) and all(n.startswith((f"model._blocks.{last}.", "model._conv_head", "model._bn1"))
                              for n in _grads(bb))
    assert not net._blocks[0].training and net._blocks[last].training


def test_head_is_mlp_with_gelu_or_linear():
    m = UnicConfig(num_clusters=7, head_hidden=32)
    head = build_head(16, m)
    assert head(torch.randn(5, 16)).shape == (5, 7)
    assert sum(p.numel() for p in head.parameters()) == 16 * 32 + 32 + 32 * 7 + 7
    m.head = "linear"
    assert isinstance(build_head(16, m), torch.nn.Linear)
