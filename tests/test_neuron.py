"""Multi-spike neuron: quantizer, half-to-even rounding, soft reset by s/4, decay per transition, STE."""
from __future__ import annotations

import math

import pytest
import torch

from spiketrack.models.neuron import MultiSpikeNeuron


def test_single_step_rounds_half_to_even_and_clamps():
    n = MultiSpikeNeuron()
    x = torch.tensor([[-1.0, 0.5, 1.5, 2.5, 3.5, 3.6, 9.0]])
    assert (n(x) * 4).tolist() == [[0, 0, 2, 2, 4, 4, 4]]


def test_recursion_soft_reset_by_normalized_spike():
    n = MultiSpikeNeuron()
    with torch.no_grad():
        n.decay.copy_(torch.tensor([0.0, math.log(3.0), 5.0]))  # sigmoid 0.5, 0.75
    x = torch.tensor([[2.6], [0.3], [1.0]])
    out = n(x) * 4
    m0 = 2.6
    s0 = 3
    m1 = (m0 - s0 / 4) * 0.5 + 0.3
    s1 = round(m1)
    m2 = (m1 - s1 / 4) * 0.75 + 1.0
    assert out.flatten().tolist() == [s0, s1, round(m2)]


def test_integer_reset_option():
    n = MultiSpikeNeuron(reset="integer")
    with torch.no_grad():
        n.decay.zero_()
    out = n(torch.tensor([[2.6], [0.3]])) * 4
    assert out.flatten().tolist() == [3, round((2.6 - 3) * 0.5 + 0.3)]


def test_state_does_not_persist_between_calls():
    n = MultiSpikeNeuron()
    x = torch.rand(3, 5) * 4
    torch.testing.assert_close(n(x), n(x))


def test_too_many_steps_is_an_error():
    with pytest.raises(ValueError, match="at most 4"):
        MultiSpikeNeuron()(torch.zeros(5, 2))


def test_surrogate_gradient_is_clipped_straight_through():
    n = MultiSpikeNeuron()
    x = torch.tensor([[-0.5, 0.2, 2.0, 3.9, 4.5]], requires_grad=True)
    n(x).sum().backward()
    assert x.grad.tolist() == [[0.0, 0.25, 0.25, 0.25, 0.0]]


def test_decay_gets_gradient_only_with_several_steps():
    n = MultiSpikeNeuron()
    n((torch.rand(1, 8) * 4).requires_grad_()).sum().backward()
    assert n.decay.grad is None
    n(torch.rand(3, 8) * 4).sum().backward()
    assert n.decay.grad[:2].abs().sum() > 0 and n.decay.grad[2] == 0
