"""M2's training schedule: labelled batches served every k steps, and the Adam that Pyro's
``ss_vae_M2`` example runs (two SVI objects sharing one optimizer), reproduced step for step."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from inference.data import TensorData
from inference.semisupervised import SemiSupervisedData, SemiSupervisedELBO, TwinStepAdam


def _data(n: int = 50, labels: int = 10) -> SemiSupervisedData:
    x = torch.arange(float(n)).unsqueeze(-1)  # each row names itself
    return SemiSupervisedData.split(TensorData(x, torch.arange(n) % 5), labels, seed=0,
                                    labelled_every=2)


def test_a_labelled_batch_follows_every_k_unlabelled_ones_cycling_the_labels():
    data = _data()  # 10 labelled, 40 unlabelled; batches of 4: 10 unlabelled batches
    served = list(data.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    kinds = ["L" if y is not None else "U" for _, y in served]
    assert "".join(kinds) == "UUL" * 5
    assert len(served) == data.num_batches(4) == 15
    unlabelled = torch.cat([x for x, y in served if y is None])[:, 0]
    assert sorted(unlabelled.tolist()) == sorted(data.unlabelled.x[:, 0].tolist())
    labelled = torch.cat([x for x, y in served if y is not None])[:, 0]  # 5 batches = 20 rows
    first_pass, second_pass = labelled[:10], labelled[10:]  # batches 4 + 4 + 2, then 4 + 4
    assert sorted(first_pass.tolist()) == sorted(data.labelled.x[:, 0].tolist())
    assert set(second_pass.tolist()) <= set(data.labelled.x[:, 0].tolist())
    labels = torch.cat([y for _, y in served if y is not None])
    truth = dict(zip(data.labelled.x[:, 0].tolist(), data.labelled.y.tolist(), strict=True))
    assert labels.tolist() == [truth[v] for v in labelled.tolist()]  # labels travel with x


def test_labelled_passes_count_the_rows_served_per_epoch():
    data = _data()  # 10 labels in batches of 4 (4 + 4 + 2), 5 labelled batches: 18 rows
    served = [x for x, y in data.batches(4) if y is not None]
    assert data.labelled_passes(4) == sum(map(len, served)) / 10 == 1.8
    assert _data(n=210, labels=10).labelled_passes(10) == 10.0  # 200 unlabelled, every 2
    once = SemiSupervisedData(data.labelled, data.unlabelled)  # each label once per epoch
    assert once.labelled_passes(4) == 1.0


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf"), "0.5", True])
def test_labelled_weight_must_be_a_finite_non_negative_number(weight):
    with pytest.raises(ValueError, match="labelled_weight must be a finite number ≥ 0"):
        SemiSupervisedELBO(labelled_weight=weight)


def test_labelled_every_must_be_positive():
    with pytest.raises(ValueError, match="labelled_every must be a positive"):
        SemiSupervisedData.split(TensorData(torch.zeros(6, 1), torch.arange(6) % 2), 2,
                                 labelled_every=0)


def _problem(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    xs = [torch.randn(5, 3) for _ in range(6)]  # 6 batches of N = 5 distinct points
    ys = [torch.randn(5, 2) for _ in range(6)]
    return net, xs, ys


def test_twin_step_adam_moves_as_pyro_examples_two_svis_sharing_one_optimizer():
    """The reference is Pyro itself: the example's loop (an ELBO step, then an auxiliary
    step whose model registers the module but scores nothing) against TwinStepAdam on the
    same loss, from the same initial weights, over 6 batches."""
    pyro.clear_param_store()
    net, xs, ys = _problem()

    def model(x, y):
        pyro.module("net", net)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(net(x), 1.0).to_event(1), obs=y)

    def aux_model(x, y):
        pyro.module("net", net)  # the example's model_classify on an unlabelled batch

    optim = pyro.optim.Adam({"lr": 0.05, "betas": (0.95, 0.999)})
    main, aux = (SVI(m, lambda x, y: None, optim, loss=Trace_ELBO()) for m in (model, aux_model))
    for x, y in zip(xs, ys, strict=True):
        main.step(x, y)
        aux.step(x, y)
    pyro_weights = [p.detach().clone() for p in net.parameters()]

    ours, _, _ = _problem()
    plain, _, _ = _problem()
    for net_, cls in ((ours, TwinStepAdam), (plain, torch.optim.Adam)):
        opt = cls(net_.parameters(), lr=0.05, betas=(0.95, 0.999))
        for x, y in zip(xs, ys, strict=True):
            loss = -dist.Normal(net_(x), 1.0).log_prob(y).sum()  # the same ELBO by hand
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for got, want, single in zip(ours.parameters(), pyro_weights, plain.parameters(),
                                 strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
        assert (single.detach() - want).abs().max() > 1e-3  # plain Adam does not


def test_vae_train_labelled_every_reaches_the_training_data():
    from inference.config import RunConfig
    from inference.runs import load_data

    config = RunConfig(dataset="embedded", model="m2", guide="m2", loss="m2", labels=20,
                       labelled_every=3, valid=100)
    train = load_data(config, download=False)["train"]
    assert train.labelled_every == 3 and len(train.labelled) == 20
    kinds = ["L" if y is not None else "U" for _, y in train.batches(50)]
    assert "".join(kinds[:8]) == "UUULUUUL"
    default = load_data(RunConfig(dataset="embedded", model="m2", guide="m2", loss="m2",
                                  labels=20, valid=100), download=False)["train"]
    assert default.labelled_every == 1  # the lab's default: labels on every other step
    example = load_data(RunConfig(dataset="embedded", model="m2", guide="m2", loss="m2",
                                  labels=20, labelled_every=0, valid=100), download=False)
    assert example["train"].labelled_every is None  # Pyro's example: once per epoch
    assert [y is not None for _, y in example["train"].batches(50)].count(True) == 1
