"""The trainer's own options: the ``train`` section of a recipe.

They live with the trainer (the recipe schema in :mod:`mmssl.config` imports them), so the trainer does not
depend on the recipe format.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """How the one trainer runs. ``lr`` is the learning rate at ``batch_size`` after scaling."""

    steps: int = 1000
    batch_size: int = 256
    optimizer: str = "sgd"  # sgd | lars | adamw
    lr: float = 0.1
    lr_scaling: str = "none"  # none | linear (lr * global_batch / 256, as SimCLR/BYOL)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    # LARS trust coefficient and LARC clipping (mmssl.train.optim.LARS): SimCLR's reference 0.001 without
    # clipping; solo-learn's CIFAR-10 settings 0.02 with clipping. A resumed run keeps the values of its
    # checkpoint (they are optimizer param-group options, restored by load_state_dict, as momentum is).
    lars_eta: float = 0.001
    lars_clip: bool = False
    exclude_bias_and_norm: bool = True  # from weight decay and LARS adaptation (SimCLR/BYOL practice)
    clip_grad: float | None = None
    accumulate: int = 1
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    num_workers: int = 0
    # Intra-op CPU threads (None: torch's default). On small CPU machines 1 thread plus a data worker
    # avoids OpenMP oversubscription, which we measured at 10-30x slowdowns on 2 busy cores.
    num_threads: int | None = None
    ckpt_every: int = 500
    log_every: int = 10
    sync_bn: bool = False
    progress: bool = True
    compile: bool = False
    # NHWC memory format for the model and every 4-D batch tensor, and for the frozen features extracted
    # after training: tensor-core convolutions run without layout transposes under bf16, and oneDNN's
    # CPU convolutions run faster too (context's CNN at 64 px: 1.2x training, 1.5x feature extraction on
    # an AVX2 CPU). No effect on results beyond rounding order.
    channels_last: bool = False
    # Keep freed host memory in the process for the next step instead of returning it to the kernel
    # (glibc malloc settings; Linux only): fewer page faults, faster CPU steps and feature extraction,
    # the peak memory kept until exit. See mmssl.train.host_memory.
    retain_freed_memory: bool = True
    # How several processes share the work: ddp (every rank holds the whole model; gradients all-reduced)
    # or fsdp (FSDP2: parameters, gradients and optimizer state sharded over the ranks; sharded DCP
    # checkpoints). See mmssl.train.fsdp.
    strategy: str = "ddp"
    # Steps whose loss or gradients are not finite are skipped (no update, counted as skipped_steps); this
    # many in a row stop the run. 0: stop at the first one. See mmssl.train.nonfinite.
    max_nonfinite_steps: int = 3


OPTIMIZERS = ("sgd", "lars", "adamw")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
STRATEGIES = ("ddp", "fsdp")
