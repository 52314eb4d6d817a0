"""Human-readable model summary: parameters per top-level part and a layer table."""
from __future__ import annotations

from torch import nn

from .spiketrack import unused_parameter_names


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_summary(model: nn.Module) -> str:
    """Variant config, parameter counts (total, template encoder, per stage) and buffers."""
    cfg = model.cfg
    unused = set(unused_parameter_names(cfg))
    params = dict(model.named_parameters())
    lines = [f"variant {cfg.name}: widths {cfg.embed_dims}, crop {cfg.search_size}px, "
             f"{cfg.num_templates} template step(s), feature map {cfg.feat_size}x{cfg.feat_size}, "
             f"head {cfg.head_channels} ch, spikes 0..{cfg.max_spike}",
             f"parameters: {_count(model):,} (encoder {_count(model.encoder):,}, head {_count(model.decoder):,}); "
             f"never read by inference: {sum(params[n].numel() for n in unused):,}",
             f"buffers: {sum(b.numel() for b in model.buffers()):,}", "",
             f"{'module':<28}{'type':<26}{'parameters':>14}"]
    for name, child in model.encoder.named_children():
        items = list(child.named_children()) if isinstance(child, nn.ModuleList) else [("", child)]
        for idx, mod in items:
            label = f"encoder.{name}" + (f".{idx}" if idx else "")
            lines.append(f"{label:<28}{type(mod).__name__:<26}{_count(mod):>14,}")
    lines.append(f"{'decoder':<28}{type(model.decoder).__name__:<26}{_count(model.decoder):>14,}")
    neurons = sum(1 for m in model.modules() if type(m).__name__ == "MultiSpikeNeuron")
    lines.append(f"\n{neurons} multi-spike neuron modules")
    return "\n".join(lines)
