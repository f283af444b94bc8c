"""Experiment loggers (run.loggers): wandb and mlflow get what TensorBoard gets (fakes: neither is installed)."""

import sys
import types
from pathlib import Path

import pytest

from jdrl.errors import ConfigError, MissingDependencyError
from jdrl.training import train
from jdrl.training.runlog import LOGGERS

TINY = [
    "net.options={width: 0.0625, dropout: 0.0}",
    "data.batch_size=2",
    "data.crop=32",
    "data.synthetic={train: 4, val: 1, size: 48}",
    "schedule.unit=step",
    "schedule.total=3",
    "schedule.warmup=0",
    "schedule.log_every=1",
    "schedule.val_every=3",
    "schedule.save_every=1000",
    "optim.lr=0.001",
    "optim.decay_every=1000",
    "run.deterministic=true",
    "run.samples=1",
]
ALL = "run.loggers=[tensorboard, wandb, mlflow]"


class FakeWandb(types.ModuleType):
    def __init__(self):
        super().__init__("wandb")
        self.inits, self.scalars, self.images, self.finished = [], [], [], 0
        fake = self

        class Run:
            def log(self, data, step):
                for key, value in data.items():
                    (fake.images if isinstance(value, list) else fake.scalars).append((key, step, value))

            def finish(self):
                fake.finished += 1

        self.Run = Run

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self.Run()

    @staticmethod
    def Image(array):  # wandb's name
        return ("image", array.shape, str(array.dtype))


class FakeMlflow(types.ModuleType):
    def __init__(self):
        super().__init__("mlflow")
        self.uris, self.runs, self.metrics, self.images, self.dicts, self.terminated = [], [], [], [], [], []
        fake = self

        class MlflowClient:
            def __init__(self, tracking_uri):
                fake.uris.append(tracking_uri)

            def get_experiment_by_name(self, name):
                return None

            def create_experiment(self, name):
                return "1"

            def create_run(self, experiment_id, run_name):
                fake.runs.append((experiment_id, run_name))
                return types.SimpleNamespace(info=types.SimpleNamespace(run_id=f"run{len(fake.runs)}"))

            def log_metric(self, run_id, key, value, step):
                fake.metrics.append((run_id, key, step, value))

            def log_image(self, run_id, image, key, step):
                fake.images.append((run_id, key, step, image.shape))

            def log_dict(self, run_id, dictionary, artifact_file):
                fake.dicts.append((run_id, artifact_file, dictionary))

            def set_terminated(self, run_id):
                fake.terminated.append(run_id)

        self.MlflowClient = MlflowClient


@pytest.fixture
def fakes(monkeypatch):
    wandb, mlflow = FakeWandb(), FakeMlflow()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    for name in ("WANDB_MODE", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    return wandb, mlflow


def tensorboard_tags(run: Path) -> tuple[set, set, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    points = sorted((tag, event.step) for tag in scalars for event in events.Scalars(tag))
    return scalars, set(events.Tags()["images"]), points


def test_wandb_and_mlflow_receive_what_tensorboard_receives(tmp_path, fakes, monkeypatch):
    wandb, mlflow = fakes
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = train("pixel", TINY + [ALL], run_dir=tmp_path / "run", quiet=True)
    scalars, images, points = tensorboard_tags(run)
    assert {"loss/total", "lr", "skipped_steps", "val/psnr"} <= scalars and images == {"val/samples"}
    assert sorted((key, step) for key, step, _ in wandb.scalars) == points
    assert sorted((key, step) for _, key, step, _ in mlflow.metrics) == points
    assert [(key, step) for key, step, _ in wandb.images] == [("val/samples", 3)]
    assert [(key, step) for _, key, step, _ in mlflow.images] == [("val/samples", 3)]
    (_, _, pictures), = wandb.images
    assert len(pictures) == 1 and pictures[0][2] == "uint8" and pictures[0][1][2] == 3
    assert mlflow.images[0][3][2] == 3
    # offline modes and places: WANDB_MODE passed on, files in the run folder, an MLflow file store there
    (init,) = wandb.inits
    assert init["mode"] == "offline" and init["dir"] == str(run) and init["project"] == "jdrl"
    assert init["config"]["run"]["loggers"] == ["tensorboard", "wandb", "mlflow"]
    assert mlflow.uris == [(run / "mlruns").resolve().as_uri()] and mlflow.dicts[0][1] == "config.json"
    assert wandb.finished == 1 and mlflow.terminated == ["run1"]

    # a resumed run continues the same W&B and MLflow runs
    train("pixel", TINY + [ALL, "schedule.total=4"], run_dir=run, resume="auto", quiet=True)
    assert wandb.inits[1]["id"] == init["id"] and wandb.inits[1]["resume"] == "allow"
    assert len(mlflow.runs) == 1 and {r for r, *_ in mlflow.metrics} == {"run1"}
    assert max(step for _, step, _ in wandb.scalars) == 4


def test_an_unknown_logger_lists_the_choices_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="unknown logger 'comet'; choose from: tensorboard, wandb, mlflow"):
        train("pixel", TINY + ["run.loggers=[tensorboard, comet]"], run_dir=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
    assert list(LOGGERS)[:3] == ["tensorboard", "wandb", "mlflow"]


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_logger_without_its_package_names_the_extra_before_training(name, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=rf"pip install 'jdrl\[{name}\]'"):
        train("pixel", TINY + [f"run.loggers=[tensorboard, {name}]"], run_dir=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()  # nothing written: the same command works once it is installed
