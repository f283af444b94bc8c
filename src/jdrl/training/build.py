"""What a run trains with, built from its config: the network (fresh or from ``net.init``), the loss
with its reblurring module, the weight average, the objective (DDP-wrapped when distributed), Adam
over both, and the mixed-precision settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from jdrl.checkpoint import is_jdrl_checkpoint, read_checkpoint
from jdrl.errors import ConfigError, WeightsError
from jdrl.hub import is_model_source
from jdrl.losses import JDRLLoss
from jdrl.nets.factory import LoadedWeights, NetSpec, build_loaded, build_registered
from jdrl.nets.factory import read_weights as read_network_weights
from jdrl.reblur import ReblurModule
from jdrl.runtime import amp_dtype
from jdrl.training.config import TrainConfig
from jdrl.training.distributed import Dist
from jdrl.training.ema import WeightEMA
from jdrl.training.objective import Objective
from jdrl.weights import load_strict


@dataclass
class TrainingParts:
    """Everything :func:`build_parts` makes; ``notes`` are things the user should know."""

    spec: NetSpec
    net: nn.Module
    loss: JDRLLoss
    ema: WeightEMA | None
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    amp: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    notes: list[str] = field(default_factory=list)


def read_init(config: TrainConfig, trust_code: bool, notes: list[str]) -> LoadedWeights:
    """``net.init``'s weights. The file's architecture wins over ``net.name`` (a preset's default) when it tells."""
    net = config.net
    path = str(net.init)

    # net.name reached the trainer typed by the user or trusted (jdrl.training.load_train_config refuses a code
    # name from a config file without trust_code), so the file may name that same network
    def read(source: str | dict, name: str | None) -> LoadedWeights:
        return read_network_weights(source, name, source=path, trust_code=trust_code, trusted_name=net.name,
                                    options=net.options)

    if is_model_source(path):  # a model folder, .safetensors file or hf: id: read_weights reads it
        return read(path, None)
    data = read_checkpoint(path)  # read once; both attempts below use it
    try:
        init = read(data, None)
    except WeightsError:  # the file cannot tell: net.name picks the network (and names the keys that differ)
        return read(data, net.name)
    if init.spec.name != net.name:
        notes.append(f"net.init {path} holds a {init.spec.name} network: training that "
                     f"(net.name={net.name} is not used)")
    return init


def build_parts(config: TrainConfig, init: LoadedWeights | None, device: torch.device, dist: Dist
                ) -> TrainingParts:
    """The run's network, loss, average, objective and optimizer on ``device``; the seed makes every rank alike."""
    torch.manual_seed(config.run.seed)  # identical initial weights on every rank
    notes: list[str] = []
    spec = init.spec if init is not None else NetSpec(config.net.name, dict(config.net.options))
    net = (build_loaded(init, source=config.net.init) if init is not None
           else build_registered(spec.name, spec.options, where="net.options"))
    multiple = getattr(net, "size_multiple", 1)
    if config.data.crop is not None and config.data.crop % multiple:
        raise ConfigError(f"data.crop={config.data.crop} must be a multiple of {multiple} for {spec.name}")
    loss = JDRLLoss(config.loss, device=device)
    notes += loss.notes
    if device.type == "cuda" and loss.criterion.deforms and config.loss.flow == "dis":
        notes.append("loss.flow=dis runs on the CPU; on a GPU, loss.flow=auto (RAFT-small) or spynet "
                     "(loss.flow_weights=PATH) is faster (docs/RESULTS.md, 'Training step')")
    if init is not None and loss.reblur is not None:
        notes += load_init_reblur(loss.reblur, init.checkpoint, str(config.net.init), config.loss.reblur)
    net.to(device)
    loss.to(device)
    if config.run.channels_last and device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    ema = WeightEMA(net, config.run.ema_decay, config.run.ema_warmup) if config.run.ema_decay else None
    objective: nn.Module = Objective(net, loss, compile_net=config.run.compile, net_name=spec.name)
    if dist.enabled:
        objective = nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # warm-up leaves R unused, reblur-only leaves the network unused
        )
    optimizer = torch.optim.Adam(parameter_groups(net, loss), lr=config.optim.lr, betas=(config.optim.betas[0], config.optim.betas[1]),
                                 weight_decay=config.optim.weight_decay)
    amp = amp_dtype(config.run.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    torch.manual_seed(config.run.seed + dist.rank)  # dropout differs per rank
    return TrainingParts(spec, net, loss, ema, objective, optimizer, amp, scaler, notes)


def parameter_groups(net: nn.Module, loss: JDRLLoss) -> list[dict]:
    """One Adam over the network and the reblurring module, as released (groups named for the log)."""
    groups = [{"params": list(net.parameters()), "name": "net"}]
    if list(loss.parameters()):
        groups.append({"params": list(loss.parameters()), "name": "reblur"})
    return groups


def load_init_reblur(reblur: ReblurModule, checkpoint: Mapping, path: str, kind: str) -> list[str]:
    """``net.init``'s reblurring module into ``reblur`` when the file keeps one that fits; notes otherwise."""
    if is_jdrl_checkpoint(checkpoint) and checkpoint.get("reblur"):
        load_strict(reblur, checkpoint["reblur"]["state_dict"], f"{path} (reblur)")
    elif isinstance(checkpoint.get("Reblur_state_dict"), dict):
        if reblur.kernel == "isotropic":
            reblur.load_released(checkpoint["Reblur_state_dict"])
        else:  # the released module has isotropic kernels only
            return [f"{path}: its Reblur_state_dict is not loaded: loss.reblur={kind} "
                    "is a different reblurring module; it starts from scratch"]
    return []
