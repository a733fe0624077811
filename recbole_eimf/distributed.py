"""Data-parallel training over ``torch.distributed``, on RecBole's own DDP path.

RecBole 1.2.1 trains on several ranks when its config carries ``local_rank``: each rank reads its
share of every dataloader (``DistributedSampler``), the trainer wraps the model in
``DistributedDataParallel`` (gradients averaged over ranks), evaluation results are gathered
(``Trainer._map_reduce``) and rank 0 alone logs and saves the checkpoint. What it hard-codes for
GPUs is replaced here, and nothing else:

* the process group: ``gloo`` on CPUs (one torch thread per rank), ``nccl`` on GPUs
  (:func:`init_rank`, which the plugin's ``Config._init_device`` calls);
* ``DistributedDataParallel(device_ids=[rank])`` and ``SyncBatchNorm``, which accept GPU modules
  only: CPU models are wrapped without ``device_ids`` and keep their batch norms (:func:`make_trainer`);
* the checkpoint name, which RecBole stamps per rank with the local time: rank 0's is used by
  every rank, and the ranks wait for its last save before testing (:func:`share_checkpoint`).

Keys (RecBole's): ``nproc`` (ranks on this machine), ``world_size`` (ranks on all machines,
default ``nproc``), ``ip`` / ``port`` (rank 0's machine), ``offset`` (this machine's first rank).
Under ``torchrun`` its environment (``LOCAL_RANK``, ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) gives them instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterator, MutableMapping, Optional

import torch
import torch.distributed as dist

from recbole_eimf.errors import ConfigError

DEFAULT_IP = "localhost"
DEFAULT_PORT = 5678  # RecBole's run() default
TORCHRUN_KEYS = {"local_rank": "LOCAL_RANK", "world_size": "WORLD_SIZE", "nproc": "LOCAL_WORLD_SIZE",
                 "ip": "MASTER_ADDR", "port": "MASTER_PORT"}


@dataclass(frozen=True)
class Launch:
    """Where the ranks of one training run: RecBole's keys, checked."""

    nproc: int
    world_size: int
    ip: str
    port: int
    offset: int

    @property
    def distributed(self) -> bool:
        return self.nproc > 1 or self.world_size > 1


def _int_key(config, key: str, default: int, least: int) -> int:
    value = config[key] if key in config and config[key] is not None else default
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"`{key}` must be an integer >= {least}, got {value!r}")
    return value


def launch_settings(config) -> Launch:
    """The launch keys of ``config`` (a RecBole Config or its dict), defaults filled in."""
    nproc = _int_key(config, "nproc", 1, 1)
    world_size = _int_key(config, "world_size", -1, -1)
    world_size = nproc if world_size in (-1, 0) else world_size
    offset = _int_key(config, "offset", 0, 0)
    if offset + nproc > world_size:
        raise ConfigError(f"`offset` [{offset}] + `nproc` [{nproc}] exceeds `world_size` [{world_size}]: "
                          f"the ranks of all machines together are `world_size`")
    ip = str(config["ip"] if "ip" in config and config["ip"] else DEFAULT_IP)
    port = _int_key(config, "port", DEFAULT_PORT, 1)
    return Launch(nproc, world_size, ip, port, offset)


def torchrun_settings() -> Optional[dict]:
    """This process's rank keys when ``torchrun`` started it, else None."""
    if "LOCAL_RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    keys = {key: os.environ[var] for key, var in TORCHRUN_KEYS.items() if var in os.environ}
    keys = {key: value if key == "ip" else int(value) for key, value in keys.items()}
    keys["offset"] = int(os.environ.get("RANK", keys["local_rank"])) - keys["local_rank"]
    return keys


def uses_gpu(config_dict: MutableMapping) -> bool:
    return bool(config_dict.get("use_gpu", True)) and bool(str(config_dict.get("gpu_id", ""))) \
        and torch.cuda.is_available()


def init_device(config_dict: MutableMapping, single_process_init: Callable[[], None]) -> None:
    """The plugin Config's ``_init_device``: RecBole's single-process one (``gpu_id``, the
    device), then, in a rank of a distributed run, :func:`init_rank` instead of RecBole's
    multi-rank branch, which hard-codes nccl and GPUs."""
    local_rank = config_dict.pop("local_rank", None)
    single_process_init()
    torchrun = torchrun_settings()
    if local_rank is not None or torchrun:
        config_dict["local_rank"] = local_rank
        config_dict.update(torchrun or {})
        init_rank(config_dict)


def init_rank(config_dict: MutableMapping) -> None:
    """Join the process group as rank ``offset + local_rank`` and set the rank's device (what
    RecBole's ``Config._init_device`` does, with gloo on CPUs). Ranks other than 0 log errors only."""
    launch = launch_settings(config_dict)
    local_rank = int(config_dict["local_rank"])
    gpu = uses_gpu(config_dict)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if gpu else "gloo", rank=launch.offset + local_rank, world_size=launch.world_size,
            init_method="env://" if torchrun_settings() else f"tcp://{launch.ip}:{launch.port}",
        )
    if gpu:
        torch.cuda.set_device(local_rank)
        config_dict["device"] = torch.device("cuda", local_rank)
    else:
        # The ranks share the machine's cores: one thread each, none waiting for another's core.
        torch.set_num_threads(1)
        config_dict["device"] = torch.device("cpu")
    config_dict.update({"single_spec": False, "nproc": launch.nproc, "world_size": launch.world_size,
                        "offset": launch.offset, "ip": launch.ip, "port": launch.port})
    if local_rank != 0:
        config_dict.update({"state": "error", "show_progress": False, "verbose": False})


def reports_results() -> bool:
    """Whether this process prints a run's results: all but the ranks ``torchrun`` numbers above 0."""
    return int(os.environ.get("RANK", "0")) == 0


def check_launch(config, launch: Launch) -> None:
    """Refuse, naming the key, ranks this machine cannot hold and a port already taken."""
    gpu = uses_gpu(config.final_config_dict)
    if gpu and launch.nproc > torch.cuda.device_count():
        raise ConfigError(f"`nproc` [{launch.nproc}] is more than the {torch.cuda.device_count()} GPU(s) of "
                          f"`gpu_id` [{config['gpu_id']}]: one rank per GPU")
    cores = len(os.sched_getaffinity(0))
    if not gpu and launch.nproc > cores:
        raise ConfigError(f"`nproc` [{launch.nproc}] is more than the {cores} CPU core(s) of this machine: "
                          f"one rank per core at most")
    if launch.offset == 0:  # rank 0's machine listens on `port`
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((launch.ip, launch.port))
            except OSError as err:
                raise ConfigError(f"`port` [{launch.port}] on `ip` [{launch.ip}] is not free ({err.strerror}): "
                                  f"choose another, e.g. --port={free_port()}") from None


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def spawn_ranks(target: Callable[..., dict], launch: Launch, config_dict: Optional[dict], **kwargs: Any) -> Optional[dict]:
    """Run ``target(config_dict=..., **kwargs)`` on ``launch.nproc`` ranks of this machine, as
    RecBole's ``run`` does; returns rank 0's result (None when rank 0 is on another machine)."""
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    keys = {"nproc": launch.nproc, "world_size": launch.world_size, "ip": launch.ip, "port": launch.port,
            "offset": launch.offset}
    mp.spawn(_rank_main, args=(target, {**(config_dict or {}), **keys}, kwargs, queue), nprocs=launch.nproc, join=True)
    return None if queue.empty() else queue.get()


def _rank_main(local_rank: int, target, config_dict: dict, kwargs: dict, queue) -> None:
    result = target(config_dict={**config_dict, "local_rank": local_rank}, **kwargs)
    if local_rank == 0 and config_dict["offset"] == 0:
        queue.put(result)


@contextlib.contextmanager
def _cpu_ddp() -> Iterator[None]:
    """RecBole's trainer, building DDP for a CPU model: no ``device_ids``, no ``SyncBatchNorm``
    (both GPU-only in torch)."""
    import recbole.trainer.trainer as recbole_trainer

    ddp, convert = recbole_trainer.DistributedDataParallel, torch.nn.SyncBatchNorm.convert_sync_batchnorm
    recbole_trainer.DistributedDataParallel = lambda module, device_ids=None, **kw: ddp(module, **kw)
    torch.nn.SyncBatchNorm.convert_sync_batchnorm = lambda module, *args, **kw: module
    try:
        yield
    finally:
        recbole_trainer.DistributedDataParallel = ddp
        torch.nn.SyncBatchNorm.convert_sync_batchnorm = convert


def make_trainer(trainer_class: type, config, model: torch.nn.Module):
    """``trainer_class(config, model)``; on CPU ranks with a CPU-capable DDP (module doc)."""
    if config["single_spec"] or config["device"].type != "cpu":
        return trainer_class(config, model)
    with _cpu_ddp():
        return trainer_class(config, model)


def share_checkpoint(trainer) -> None:
    """Every rank saves to (rank 0) and reloads from rank 0's checkpoint file."""
    if trainer.config["single_spec"]:
        return
    name = [trainer.saved_model_file]
    dist.broadcast_object_list(name, src=0)
    trainer.saved_model_file = name[0]


def barrier(config) -> None:
    """Wait for every rank (e.g. for rank 0's last checkpoint before the test loads it)."""
    if not config["single_spec"]:
        dist.barrier()


def as_single_process(config) -> None:
    """A config a rank wrote (into its checkpoint) made fit for one process: whole dataloaders,
    no process group, the first GPU instead of the rank's."""
    if config["single_spec"] is False:
        config.final_config_dict.update({"single_spec": True, "local_rank": 0})
        if config["device"].type == "cuda":
            config["device"] = torch.device("cuda")


def finish(config) -> None:
    if not config["single_spec"] and dist.is_initialized():
        dist.destroy_process_group()


def build_stages_first(config, log: logging.Logger) -> None:
    """The model's pipeline stages (EIMF's ESIM), built once before ranks train: in the launching
    process, or on each machine's local rank 0 while the others wait (torchrun)."""
    from recbole_eimf.quick_start.stages import build_stage_caches, declared_stages

    if not declared_stages(config):
        return
    if config["single_spec"] or config["local_rank"] == 0:
        build_stage_caches([(config["model"], config)], log)
    barrier(config)
