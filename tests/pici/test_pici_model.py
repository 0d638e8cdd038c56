"""PICI's ViT-MAE (SPEC P2, P8): masking counts, loss on masked patches only, deterministic unmasked eval,
paper-size shapes, and the parameter groups the stages train."""
import pytest
import torch

from dist_cluster.models.vit_mae import PICINet, random_masking

torch.set_num_threads(2)

TINY = dict(img_size=28, patch_size=4, in_chans=3, embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=64,
            decoder_depth=1, decoder_num_heads=4)


def tiny(**kw):
    torch.manual_seed(0)
    return PICINet(num_clusters=10, instance_dim=32, **(TINY | kw))


def test_masking_keeps_exactly_int_l_times_one_minus_r_distinct_patches():
    for r, want in ((0.5, 24), (0.75, 12), (0.0, 49), (0.3, 34)):
        keep, restore, mask = random_masking(3, 49, r, "cpu")
        assert keep.shape == (3, want) and mask.sum(1).tolist() == [49 - want] * 3
        assert all(len(set(k.tolist())) == want for k in keep)
        assert torch.equal(mask.gather(1, keep), torch.zeros_like(keep, dtype=mask.dtype))
        assert torch.equal(torch.gather(torch.argsort(restore, 1), 1, torch.arange(want).expand(3, -1)), keep)
    net = tiny()
    out = net(torch.randn(5, 3, 28, 28), mask_ratio=0.5, decode=True)
    assert out["pred"].shape == (5, 49, 48) and out["mask"].sum(1).tolist() == [25.0] * 5
    assert out["z"].shape == (5, 32) and torch.allclose(out["z"].norm(dim=1), torch.ones(5), atol=1e-5)
    assert out["c"].shape == (5, 10) and torch.allclose(out["c"].sum(1), torch.ones(5), atol=1e-5)


def test_reconstruction_loss_ignores_visible_patches_and_uses_norm_pix_targets():
    net = tiny()
    imgs = torch.randn(4, 3, 28, 28)
    out = net(imgs, mask_ratio=0.5, decode=True)
    pred, mask = out["pred"].detach(), out["mask"]
    base = net.mae.reconstruction_loss(imgs, pred, mask)
    changed = pred + 5.0 * (1 - mask).unsqueeze(-1) * torch.randn_like(pred)
    assert net.mae.reconstruction_loss(imgs, changed, mask).item() == pytest.approx(base.item(), rel=1e-6)
    changed_masked = pred + mask.unsqueeze(-1) * torch.randn_like(pred)
    assert net.mae.reconstruction_loss(imgs, changed_masked, mask).item() != pytest.approx(base.item(), rel=1e-3)
    # a prediction equal to the per-patch-normalised target costs (almost) nothing and maps back to the pixels
    t = net.mae.patchify(imgs)
    perfect = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    assert net.mae.reconstruction_loss(imgs, perfect, mask).item() < 1e-10
    assert torch.allclose(net.mae.pixels(imgs, perfect), imgs, atol=1e-4)
    assert torch.equal(net.mae.unpatchify(t), imgs)


def test_unmasked_eval_is_bit_identical_and_draws_no_random_numbers():
    net = tiny().eval()
    x = torch.randn(6, 3, 28, 28)
    with torch.no_grad():
        state = torch.get_rng_state()
        a = net(x, mask_ratio=0.0)
        assert torch.equal(torch.get_rng_state(), state)
        b = net(x, mask_ratio=0.0)
    for k in ("h", "z", "c"):
        assert torch.equal(a[k], b[k])
    with torch.no_grad():   # masked passes differ (the reference code's test-time behaviour, SPEC P7-3)
        assert not torch.equal(net(x, mask_ratio=0.5)["c"], net(x, mask_ratio=0.5)["c"])


def test_param_groups_partition_trainable_parameters_and_sincos_tables_are_frozen():
    net = tiny()
    groups = net.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)) == len(trainable)
    assert not net.mae.pos_embed.requires_grad and not net.mae.decoder_pos_embed.requires_grad
    assert any(p is net.mae.mask_token for p in groups["decoder"])
    assert any(p is net.mae.cls_token for p in groups["encoder"])
    learned = tiny(pos_embed="learned")
    assert learned.mae.pos_embed.requires_grad
    with pytest.raises(ValueError):
        tiny(pos_embed="1d")
    # reconstruction alone reaches encoder and decoder but neither head
    out = net(torch.randn(2, 3, 28, 28), mask_ratio=0.5, decode=True, heads=False)
    net.mae.reconstruction_loss(torch.randn(2, 3, 28, 28), out["pred"], out["mask"]).backward()
    assert all(p.grad is not None for p in groups["encoder"] + groups["decoder"])
    assert all(p.grad is None for p in groups["instance_head"] + groups["cluster_head"])


def test_paper_size_shapes_vit_small_six_blocks_and_512_by_8_decoder():
    torch.manual_seed(0)
    net = PICINet(num_clusters=4, instance_dim=128)     # defaults are the paper's sizes (SPEC P2, P5)
    mae = net.mae
    assert len(mae.blocks) == 6 and mae.blocks[0].attn.num_heads == 12 and mae.cls_token.shape[-1] == 384
    assert len(mae.decoder_blocks) == 8 and mae.decoder_blocks[0].attn.num_heads == 16
    assert mae.decoder_embed.out_features == 512 and mae.num_patches == 196
    with torch.no_grad():
        out = net(torch.randn(1, 3, 224, 224), mask_ratio=0.5, decode=True)
    assert out["pred"].shape == (1, 196, 768) and int(out["mask"].sum()) == 98
    assert out["z"].shape == (1, 128) and out["c"].shape == (1, 4)
