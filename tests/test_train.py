"""The training loop: reproducible, resumable, safe on divergence and on a crash."""

import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.nn import PyroModule
from torch.utils.data import TensorDataset

from guides import make_guide
from inference import CheckpointError, TrainingDiverged, evaluate_elbo, fit, load_checkpoint
from inference.checkpoint import save_checkpoint
from models import data_plate, make_model
from models.nets import StandardNormal

SMALL = {"z_dim": 4, "hidden": (32,)}


def small_pair():
    torch.manual_seed(0)
    return make_model("bernoulli_mlp", **SMALL), make_guide("gaussian_mlp", **SMALL)


def flat_params(*modules):
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def test_history_is_in_nats_per_point_and_improves(binary_x):
    model, guide = small_pair()
    history = fit(model, guide, binary_x, valid=binary_x[:32], epochs=5, batch_size=16,
                  lr=1e-2, progress=False)
    assert [r["epoch"] for r in history.records] == [1, 2, 3, 4, 5]
    assert history.valid_elbo[-1] > history.valid_elbo[0]
    # nats per point: the per-point mean of Pyro's summed loss, under the same draws
    x = binary_x[:32]
    pyro.set_rng_seed(1)
    ours = evaluate_elbo(model, guide, x)
    pyro.set_rng_seed(1)
    assert ours == pytest.approx(-Trace_ELBO().loss(model, guide, x) / len(x), rel=1e-6)


def test_same_seed_same_result_on_cpu(binary_x):
    runs = []
    for _ in range(2):
        model, guide = small_pair()
        history = fit(model, guide, binary_x, epochs=2, batch_size=16, seed=7, progress=False)
        runs.append((flat_params(model, guide), history.objective))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    model, guide = small_pair()
    fit(model, guide, binary_x, epochs=2, batch_size=16, seed=8, progress=False)
    assert not torch.equal(flat_params(model, guide), runs[0][0])


def test_resume_equals_an_uninterrupted_run(binary_x, tmp_path):
    model, guide = small_pair()
    straight = fit(model, guide, binary_x, valid=binary_x[:8], epochs=4, batch_size=16,
                   progress=False)
    expected = flat_params(model, guide)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    model, guide = small_pair()
    fit(model, guide, binary_x, valid=binary_x[:8], epochs=2, batch_size=16, checkpoint=ckpt,
        progress=False)
    model, guide = small_pair()  # a fresh process would rebuild the pair from scratch
    resumed = fit(model, guide, binary_x, valid=binary_x[:8], epochs=4, batch_size=16,
                  checkpoint=ckpt, resume=True, progress=False)
    assert torch.equal(flat_params(model, guide), expected)
    assert resumed.objective == straight.objective and resumed.valid_elbo == straight.valid_elbo
    assert resumed.best_epoch == straight.best_epoch
    assert load_checkpoint(ckpt)["epoch"] == 4


class Exploding(PyroModule):
    """A model whose likelihood turns NaN once ``broken`` is set."""

    def __init__(self):
        super().__init__()
        self.prior = StandardNormal(4)
        self.linear = torch.nn.Linear(4, 784)
        self.broken = False

    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            logits = self.linear(z) * (torch.nan if self.broken else 1.0)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)


@pytest.mark.filterwarnings("ignore:Encountered NaN:UserWarning")  # Pyro's own NaN warning
def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(binary_x, tmp_path):
    model, guide = Exploding(), make_guide("gaussian_mlp", **SMALL)
    ckpt = tmp_path / "checkpoint.pt"

    def break_after_two(record):
        model.broken = record["epoch"] >= 2

    with pytest.raises(TrainingDiverged, match="loss became nan in epoch 3.*checkpoint of "
                                               "epoch 2 is kept.*smaller learning rate"):
        fit(model, guide, binary_x, epochs=5, batch_size=16, checkpoint=ckpt, progress=False,
            on_epoch=break_after_two)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_failed_write_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, {"epoch": 1, "w": torch.ones(3)})

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert load_checkpoint(ckpt)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_corrupted_and_unsafe_checkpoints_are_refused(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, {"epoch": 1, "w": torch.ones(1000)})
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checkpoint.pt is damaged: its contents no longer"):
        load_checkpoint(ckpt)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:  # a pickle that would run code when loaded without weights_only
        pickle.dump(type("Payload", (), {"__reduce__": lambda self: (print, ("owned",))})(), f)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resuming_with_another_model_names_the_mismatch(binary_x, tmp_path):
    model, guide = small_pair()
    fit(model, guide, binary_x, epochs=1, checkpoint=tmp_path / "c.pt", progress=False)
    other = make_model("bernoulli_mlp", z_dim=4, hidden=(16,))
    with pytest.raises(CheckpointError, match="does not fit this model and guide"):
        fit(other, guide, binary_x, epochs=2, checkpoint=tmp_path / "c.pt", resume=True,
            progress=False)


@pytest.mark.parametrize("loss", [
    Trace_ELBO(), TraceMeanField_ELBO(), TraceGraph_ELBO(),
    Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1),
    RenyiELBO(alpha=0, num_particles=3, max_plate_nesting=1),  # offers no differentiable_loss
])
def test_any_pyro_objective_trains(binary_x, loss):
    model, guide = small_pair()
    before = flat_params(model, guide)
    history = fit(model, guide, binary_x, epochs=1, batch_size=16, loss=loss, progress=False)
    assert torch.isfinite(torch.tensor(history.objective)).all()
    assert not torch.equal(before, flat_params(model, guide))


def test_inputs_as_pairs_and_torch_datasets(binary_x):
    labels = torch.arange(len(binary_x)) % 10
    for data in ((binary_x, labels), TensorDataset(binary_x, labels), TensorDataset(binary_x)):
        model, guide = small_pair()
        history = fit(model, guide, data, valid=data, epochs=1, batch_size=16, progress=False)
        assert len(history) == 1 and history.valid_elbo[0] < 0


def test_asking_for_missing_cuda_is_clear():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="'cuda' was asked for.*device='cpu'"):
        fit(*small_pair(), torch.zeros(4, 784), device="cuda", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_keeps_data_on_the_device_and_learns_as_on_the_cpu(binary_x):
    """The same run on both devices: other random draws, so not the same numbers, but the
    same learning (a wrong gradient on the device would fall far behind)."""
    runs = {}
    for device in ("cpu", "cuda"):
        model, guide = small_pair()
        runs[device] = fit(model, guide, binary_x, valid=binary_x[:32], epochs=5,
                           batch_size=16, lr=1e-2, device=device, progress=False).valid_elbo
    assert next(model.parameters()).is_cuda and next(guide.parameters()).is_cuda
    gain = {device: elbo[-1] - elbo[0] for device, elbo in runs.items()}
    assert gain["cpu"] > 20 and gain["cuda"] > 0.5 * gain["cpu"]
    assert runs["cuda"][-1] == pytest.approx(runs["cpu"][-1], rel=0.05)


def test_per_epoch_training_scores_read_a_random_stratified_subset_not_the_first_rows(binary_x):
    """Files can be ordered by class: the training points scored after every epoch are a
    fixed random draw over every class, not the first rows."""
    from inference.data import TensorData
    from inference.trainer import Trainer

    model, guide = make_model("bernoulli_mlp", z_dim=2, hidden=(8,)), make_guide(
        "gaussian_mlp", z_dim=2, hidden=(8,))
    data = TensorData(binary_x[:60], torch.arange(60) // 6)  # 10 classes, in order
    opt = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-3)
    trainer = Trainer(model, guide, Trace_ELBO(), opt, seed=0, clip_norm=None, progress=False,
                      train_eval_points=20)
    sample = trainer.train_points(data)
    assert len(sample) == 20 and sorted(set(sample.y.tolist())) == list(range(10))
    assert trainer.train_points(data) is sample  # the same points every epoch
    assert Trainer(model, guide, Trace_ELBO(), opt, seed=0, clip_norm=None, progress=False,
                   train_eval_points=100).train_points(data) is data


def test_the_baseline_and_every_epoch_score_the_same_training_points(binary_x, monkeypatch):
    """Without validation data the divergence check holds each epoch's training score against
    the score before training: both must read the same points, here on class-ordered data."""
    from inference.trainer import Trainer

    x = torch.cat([torch.zeros(30, 784), binary_x[:30]])  # class 0: blank, class 1: noise
    y = torch.arange(60) // 30
    scored, score = [], Trainer.score

    def spy(self, data):
        scored.append(data.x.clone())
        return score(self, data)

    monkeypatch.setattr(Trainer, "score", spy)
    history = fit(*small_pair(), (x, y), epochs=2, batch_size=16, lr=1e-2,
                  train_eval_points=10, progress=False)
    assert len(scored) == 3  # the baseline, then one score per epoch
    assert all(torch.equal(s, scored[0]) for s in scored)
    blank = (scored[0] == 0).all(1)
    assert 3 <= int(blank.sum()) <= 7  # both classes: not the first (all blank) rows
    assert history.initial_elbo < history.train_elbo[0] < history.train_elbo[1]


@pytest.mark.parametrize("name", ["constant", "iwae", "cosine"])
def test_lr_schedules_set_the_optimizers_step_in_every_epoch(binary_x, name):
    """vae-train's --schedule, read back from the optimizer after each epoch: cosine runs
    epoch e of 4 at ½ (1 + cos(π (e − 1) / 4)) of --lr; iwae at 10**(-i/7) in stage i."""
    from inference.config import SCHEDULES

    model, guide = small_pair()
    made, seen = [], []

    def sgd(params):
        made.append(torch.optim.SGD(params, lr=1e-4))
        return made[-1]

    fit(model, guide, binary_x[:48], epochs=4, batch_size=16, optimizer=sgd, progress=False,
        train_eval_points=0, lr_schedule=SCHEDULES[name](4),
        on_epoch=lambda record: seen.append(made[0].param_groups[0]["lr"]))
    step = 10 ** (-1 / 7)
    factors = {"constant": [1, 1, 1, 1], "iwae": [1, step, step, step],
               "cosine": [1, 0.5 + 0.5 * 2 ** -0.5, 0.5, 0.5 - 0.5 * 2 ** -0.5]}[name]
    assert seen == pytest.approx([1e-4 * f for f in factors], rel=1e-12)
