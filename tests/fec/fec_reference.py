"""FEC's forward as first written (scatter_add/gather, the full similarity matrix, a 5-channel stem input,
per-module layer scales, the MLP on a permuted layout), run on a model's own parameters: what the faster
layers must reproduce."""
import torch
import torch.nn.functional as F


def _assign(kn, cn, alpha=None, beta=None):
    m = torch.einsum("bco,bcn->bon", cn, kn)
    if alpha is not None:
        m = torch.sigmoid(beta + alpha * m)
    return m.detach().argmax(dim=1)


def _selected_cos(kn, cn, a):
    return (kn * torch.gather(cn, 2, a.unsqueeze(1).expand(-1, cn.shape[1], -1))).sum(dim=1)


def _aggregate(v, cv, a, weight=None):
    src = v if weight is None else v * weight.unsqueeze(1)
    sums = torch.zeros_like(cv).scatter_add(2, a.unsqueeze(1).expand_as(v), src)
    counts = torch.zeros_like(cv[:, :1]).scatter_add(2, a.unsqueeze(1), torch.ones_like(a, dtype=v.dtype)[:, None])
    return (cv + sums) / (1.0 + counts)


def cluster_enc(enc, x):
    b, c, h, w = x.shape
    k = enc.f(x).reshape(b * enc.heads, enc.head_dim, h, w)
    v = enc.v(x).reshape(b * enc.heads, enc.head_dim, h, w)
    ck, cv = (F.adaptive_avg_pool2d(t, enc.centres).flatten(2) for t in (k, v))
    kn, cn = F.normalize(k.flatten(2), dim=1), F.normalize(ck, dim=1)
    refined = enc.assign_on == "refined"
    a = _assign(kn, cn, enc.sim_alpha if refined else None, enc.sim_beta if refined else None)
    s = torch.sigmoid(enc.sim_beta + enc.sim_alpha * _selected_cos(kn, cn, a))
    r = _aggregate(v.flatten(2), cv, a, s if enc.agg_weight == "sim" else None)
    d = torch.gather(r, 2, a.unsqueeze(1).expand(-1, r.shape[1], -1)) * s.unsqueeze(1)
    return enc.proj(d.reshape(b, -1, h, w))


def cluster_pool(pool, x):
    b, _, h, w = x.shape
    grid = (h // 2, w // 2)
    k, v = pool.conv_f(x), pool.conv_v(x)
    ck, cv = (F.adaptive_avg_pool2d(t, grid).flatten(2) for t in (k, v))
    kn, cn = F.normalize(k.flatten(2), dim=1), F.normalize(ck, dim=1)
    a = _assign(kn, cn)
    r = _aggregate(v.flatten(2), cv, a, _selected_cos(kn, cn, a) if pool.agg_weight == "sim" else None)
    return pool.conv_skip(x) + pool.norm(r.reshape(b, -1, *grid)), a


def block(blk, x):
    x = x + blk.drop_path(blk.ls1(cluster_enc(blk.token_mixer, blk.norm1(x))))
    mlp = blk.mlp(blk.norm2(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return x + blk.drop_path(blk.ls2(mlp))


def forward(model, x):
    """(logits, per-pool assignments) of an FEC model, the original way."""
    b, _, h, w = x.shape
    rows = torch.arange(h, dtype=x.dtype) / (h - 1) - 0.5
    cols = torch.arange(w, dtype=x.dtype) / (w - 1) - 0.5
    pos = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).expand(b, -1, -1, -1)
    x = model.patch_embed(torch.cat([x, pos], dim=1))
    assignments = []
    for stage in model.stages:
        if stage.downsample is not None:
            x, a = cluster_pool(stage.downsample, x)
            assignments.append(a)
        for blk in stage.blocks:
            x = block(blk, x)
    return model.forward_head(model.norm(x)), assignments
