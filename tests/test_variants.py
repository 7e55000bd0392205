"""Conditional VAE and semi-supervised M2: exact objectives, and that they learn."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from torch.nn import functional as F

from guides import make_guide
from inference import TensorData, fit
from inference.generate import class_samples
from inference.semisupervised import (
    SemiSupervisedData,
    SemiSupervisedELBO,
    accuracy,
    classification_loss,
)
from models import make_model

C, D = 4, 16


def prototypes_data(n_per_class: int, seed: int = 0) -> TensorData:
    """C classes, each a fixed binary prototype with 5% of its pixels flipped."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.bernoulli(torch.full((C, D), 0.5), generator=g)
    y = torch.arange(C).repeat_interleave(n_per_class)
    flip = torch.bernoulli(torch.full((len(y), D), 0.05), generator=g)
    return TensorData((protos[y] - flip).abs(), y), protos


def small_pair(guide_name="m2"):
    kw = {"x_dim": D, "z_dim": 2, "hidden": (32,), "num_classes": C}
    return make_model("conditional_mlp", **kw), make_guide(guide_name, **kw)


def test_enumerated_objective_is_the_q_weighted_sum_over_classes():
    """TraceEnum_ELBO on an unlabelled batch = Σ_c q(c | x) [log p(x, z_c, c) − log q(z_c, c | x)]
    with z_c the guide's draw for class c: Kingma et al.'s U(x), under the same draws."""
    torch.manual_seed(0)
    model, guide = small_pair()
    x, _ = prototypes_data(2)[0].head(8)
    pyro.set_rng_seed(5)
    got = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x, None)
    pyro.set_rng_seed(5)
    g = poutine.trace(poutine.enum(guide, first_available_dim=-2)).get_trace(x, None)
    z = g.nodes["z"]["value"]  # (C, N, z_dim): one draw per class and point
    log_q_y = F.log_softmax(guide.classifier(x), -1).T  # (C, N)
    terms = []
    for c in range(C):
        y = torch.full((len(x),), c)
        cond = poutine.condition(model, data={"z": z[c]})
        m = poutine.trace(cond).get_trace(x, y)
        q = poutine.trace(poutine.condition(guide, data={"z": z[c]})).get_trace(x, y)
        log_p = sum(m.nodes[s]["fn"].log_prob(m.nodes[s]["value"]) for s in ("y", "z", "x"))
        log_qz = q.nodes["z"]["fn"].log_prob(z[c])
        terms.append(log_p - log_qz - log_q_y[c])  # (N,)
    want = -(log_q_y.exp() * torch.stack(terms)).sum()
    torch.testing.assert_close(got, want)


def test_labelled_objective_adds_alpha_times_the_classifier_cross_entropy():
    torch.manual_seed(0)
    model, guide = small_pair()
    x, y = prototypes_data(2)[0].head(8)
    want_ce = F.cross_entropy(guide.classifier(x), y, reduction="sum")
    torch.testing.assert_close(classification_loss(guide, x, y), want_ce)
    pyro.set_rng_seed(2)
    plain = SemiSupervisedELBO(alpha=0.0).differentiable_loss(model, guide, x, y)
    pyro.set_rng_seed(2)
    got = SemiSupervisedELBO(alpha=3.0).differentiable_loss(model, guide, x, y)
    torch.testing.assert_close(got, plain + 3.0 * want_ce)


def test_semi_supervised_data_serves_every_point_once_with_labels_spread():
    data, _ = prototypes_data(50)
    semi = SemiSupervisedData.split(data, labels=8, seed=1)
    assert len(semi.labelled) == 8 and len(semi.unlabelled) == 192 and len(semi) == 200
    assert semi.labelled.y.bincount().tolist() == [2, 2, 2, 2]  # balanced over classes
    batches = list(semi.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == semi.num_batches(4) == 50
    kinds = [y is not None for _, y in batches]
    assert sum(kinds) == 2 and kinds.index(True) == 0 and kinds[25]  # one every 24 unlabelled
    assert sum(len(x) for x, _ in batches) == 200


def test_m2_learns_labels_from_few_examples():
    """8 labels of 4 classes, 400 unlabelled points: q(y | x) must beat chance by far."""
    torch.manual_seed(0)
    data, _ = prototypes_data(100)
    test, _ = prototypes_data(25, seed=0)
    model, guide = small_pair()
    fit(model, guide, SemiSupervisedData.split(data, labels=8), loss=SemiSupervisedELBO(alpha=5),
        epochs=15, batch_size=50, lr=1e-2, progress=False, train_eval_points=0)
    assert accuracy(guide, test) >= 0.9


def test_class_conditional_samples_look_like_their_class():
    """A conditional VAE trained briefly: samples of class c are nearest to prototype c."""
    torch.manual_seed(0)
    data, protos = prototypes_data(100)
    model, guide = small_pair("conditional_mlp")
    fit(model, guide, data, epochs=20, batch_size=50, lr=1e-2, progress=False,
        train_eval_points=0)
    hits = 0
    for c in range(C):
        images = class_samples(model, c, 50)  # (50, D) pixel probabilities
        assert images.shape == (50, D)
        hits += ((images[:, None] - protos).abs().sum(-1).argmin(-1) == c).sum().item()
    assert hits / (50 * C) >= 0.95


def test_conditional_guide_without_labels_says_what_to_use():
    model, guide = small_pair("conditional_mlp")
    with pytest.raises(ValueError, match="needs labels y.*'m2'"):
        guide(torch.zeros(3, D))
