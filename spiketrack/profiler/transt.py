"""Architecture-only TransT (Chen et al., "Transformer Tracking", CVPR 2021) for MAC counting.

Written from the paper's description and the architecture facts of the official code
(github.com/chenxin-dlut/TransT; no weights, nothing downloaded, no code copied):

* backbone: ResNet-50 up to layer3 ("fourth stage"); layer4 removed; layer3's down-sampling
  stride changed from 2 to 1 and its 3x3 convs dilated (dilation 2), so the feature stride is
  **8** (not 16): template 128x128 -> 16x16, search 256x256 -> 32x32, 1024 channels; then a
  1x1 conv 1024 -> d = 256 (`input_proj`). (Official code dilates only layer3's first block;
  dilation does not change MACs.)
* feature fusion: 4 layers of ECA (self-attention on template and on search) + CFA
  (cross-attention both ways, each followed by an FFN 256 -> 2048 -> 256), then one CFA
  decoder (search queries template) with FFN and a final LayerNorm; 8 heads, sine positional
  encodings (elementwise, no MACs).
* heads: classification MLP (256, 256, 2) and box MLP (256, 256, 4), 3 linear layers each,
  on the 32x32 = 1024 search tokens.

Per frame, the official tracker (`pytracking/tracker/transt`) computes the template backbone
**once at initialisation** (`net.template(z)` caches the features) and per frame runs the
search backbone, `input_proj` on both feature maps (the template projection is recomputed
every frame), the fusion network and the heads. `count_transt_macs` gives both per-frame
figures: with the cached template (what TransT does) and with the template backbone recomputed.

Measured here with FlopCounterMode (MACs = FLOPs / 2, convolutions and matrix products only):
backbone template 2.404 G, backbone search 9.616 G, fusion (incl. input_proj) 13.120 G,
heads 0.270 G MACs -> 23.01 GMACs per frame with the cached template, 25.41 GMACs with it
recomputed (these agree with a layer-by-layer hand count). No published TransT FLOP count
could be verified for this module.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from spiketrack.profiler.profiles import HardwareProfile

TEMPLATE_SIZE = 128
SEARCH_SIZE = 256
D_MODEL = 256
HEADS = 8
FFN_DIM = 2048
FUSION_LAYERS = 4


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce, 3x3 (stride/dilation), 1x1 expand x4, residual, ReLU."""

    def __init__(self, in_ch: int, mid: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        out = mid * 4
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, out, 1, bias=False), nn.BatchNorm2d(out))
        needs_proj = stride != 1 or in_ch != out
        self.shortcut = (nn.Sequential(nn.Conv2d(in_ch, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                         if needs_proj else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _stage(in_ch: int, mid: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    """`blocks` bottlenecks; the first one changes width/stride."""
    layers = [Bottleneck(in_ch, mid, stride, dilation)]
    layers += [Bottleneck(mid * 4, mid, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet50_to_layer3() -> nn.Sequential:
    """TransT's trunk: ResNet-50 stem, layer1, layer2 (stride 2), layer3 (stride 1, dilation 2)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        _stage(64, 64, 3, 1, 1), _stage(256, 128, 4, 2, 1), _stage(512, 256, 6, 1, 2))


class Attention(nn.Module):
    """Multi-head attention with q/k/v/out projections; sequences are (N, d)."""

    def __init__(self, d: int = D_MODEL, heads: int = HEADS):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], self.heads, -1).transpose(0, 1)

        q, k, v = split(self.q(query)), split(self.k(key)), split(self.v(value))
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.out((weights @ v).transpose(0, 1).reshape(query.shape[0], -1))


class FeedForward(nn.Module):
    """FFN d -> 2048 -> d with ReLU."""

    def __init__(self, d: int = D_MODEL, hidden: int = FFN_DIM):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossFeatureAugment(nn.Module):
    """CFA: cross-attention (query from one branch, key/value from the other) + add&norm + FFN + add&norm."""

    def __init__(self, d: int = D_MODEL):
        super().__init__()
        self.attn, self.ffn = Attention(d), FeedForward(d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, other, other))
        return self.norm2(x + self.ffn(x))


class FusionLayer(nn.Module):
    """One ECA (self-attention per branch) + CFA (both directions) layer."""

    def __init__(self, d: int = D_MODEL):
        super().__init__()
        self.eca_z, self.eca_x = Attention(d), Attention(d)
        self.norm_z, self.norm_x = nn.LayerNorm(d), nn.LayerNorm(d)
        self.cfa_z, self.cfa_x = CrossFeatureAugment(d), CrossFeatureAugment(d)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.norm_z(z + self.eca_z(z, z, z))
        x = self.norm_x(x + self.eca_x(x, x, x))
        return self.cfa_z(z, x), self.cfa_x(x, z)


class FusionNetwork(nn.Module):
    """input_proj (1x1 conv 1024 -> d) on both maps, 4 fusion layers, one CFA decoder + LayerNorm."""

    def __init__(self, in_ch: int = 1024, d: int = D_MODEL, layers: int = FUSION_LAYERS):
        super().__init__()
        self.input_proj = nn.Conv2d(in_ch, d, 1)
        self.layers = nn.ModuleList(FusionLayer(d) for _ in range(layers))
        self.decoder, self.norm = CrossFeatureAugment(d), nn.LayerNorm(d)

    def forward(self, z_feat: torch.Tensor, x_feat: torch.Tensor) -> torch.Tensor:
        z = self.input_proj(z_feat).flatten(2)[0].T
        x = self.input_proj(x_feat).flatten(2)[0].T
        for layer in self.layers:
            z, x = layer(z, x)
        return self.norm(self.decoder(x, z))


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """3-layer MLP head with ReLU between layers."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))


class TransT(nn.Module):
    """TransT-N4 (batch 1): backbone, fusion network, classification (2) and box (4) heads."""

    def __init__(self):
        super().__init__()
        self.backbone = resnet50_to_layer3()
        self.fusion = FusionNetwork()
        self.cls_head, self.box_head = mlp(D_MODEL, D_MODEL, 2), mlp(D_MODEL, D_MODEL, 4)

    def heads(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_head(tokens), self.box_head(tokens).sigmoid()


def count_macs(fn, *args: torch.Tensor) -> int:
    """MACs of `fn(*args)` counted by FlopCounterMode (convolutions and matmuls; MACs = FLOPs / 2)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


def count_transt_macs(template_size: int = TEMPLATE_SIZE, search_size: int = SEARCH_SIZE) -> dict[str, Any]:
    """TransT MACs split into backbone-template, backbone-search, fusion (incl. input_proj), head.

    Runs on the meta device (shapes only), so it takes about a second and allocates nothing.
    """
    with torch.device("meta"):
        model = TransT().eval()
        z = torch.empty(1, 3, template_size, template_size)
        x = torch.empty(1, 3, search_size, search_size)
    with torch.no_grad():
        z_feat, x_feat = model.backbone(z), model.backbone(x)
        tokens = model.fusion(z_feat, x_feat)
        parts = {
            "backbone_template": count_macs(model.backbone, z),
            "backbone_search": count_macs(model.backbone, x),
            "fusion": count_macs(model.fusion, z_feat, x_feat),
            "head": count_macs(model.heads, tokens),
        }
    cached = parts["backbone_search"] + parts["fusion"] + parts["head"]
    return {
        "macs": parts,
        "per_frame_cached_template": cached,
        "per_frame_recomputed_template": cached + parts["backbone_template"],
        "template_size": template_size,
        "search_size": search_size,
        "feature_stride": search_size // x_feat.shape[-1],
        "counter": "torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs / 2 (conv, mm, bmm only)",
        "note": ("The official TransT tracker computes the template backbone once at initialisation "
                 "and reuses it; 'per_frame_cached_template' is its per-frame cost."),
    }


def transt_energy(profile: HardwareProfile, macs: dict[str, Any] | None = None) -> dict[str, Any]:
    """TransT energy under the MAC model: every MAC is a dense float MAC at the profile's E_MAC."""
    macs = macs or count_transt_macs()
    e_mac = profile.si("energy.e_mac")
    return {
        "profile": profile.name,
        "e_mac_j": e_mac,
        "formula": "E = E_MAC * MACs (all TransT MACs are dense float MACs)",
        "parts_j": {name: n * e_mac for name, n in macs["macs"].items()},
        "per_frame_cached_template_j": macs["per_frame_cached_template"] * e_mac,
        "per_frame_recomputed_template_j": macs["per_frame_recomputed_template"] * e_mac,
    }


def transt_summary(profiles: list[HardwareProfile], macs: dict[str, Any] | None = None) -> dict[str, Any]:
    """MAC counts plus TransT energy under every profile that has E_MAC (input of the report)."""
    macs = macs or count_transt_macs()
    return {"macs": macs,
            "energy": [transt_energy(p, macs) for p in profiles if p.has("energy.e_mac")]}
