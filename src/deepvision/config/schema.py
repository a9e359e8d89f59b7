"""The experiment configuration: one YAML file, validated into these dataclasses.

Every key has a default, so a config only states what differs. `deepvision train --help` and the
README's configuration reference list the keys; unknown keys and wrong types are rejected with a
one-line error.

Why one module of ~410 lines: each section's dataclass validates its own keys, and the options that
would be ignored are refused here against the same defaults; split up, every section would import the
others' defaults to tell which of its keys are read.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from deepvision.errors import UserError

Profile = Literal["modern", "reference"]
MAX_CLASSES = 100_000  # the largest class count accepted without a labels file naming the classes
MAX_SIDE = 8192  # the largest image_size / resize / model input side
MAX_BATCH = 65_536
MAX_EPOCHS = 100_000  # train.epochs, and the epoch of an imported checkpoint
MAX_SEED = 2**32 - 1  # NumPy's and scikit-learn's seed range


# the options each schedule and optimizer reads besides its name (warm-up, lr and weight decay: every one)
SCHEDULE_READ_BY = {"ranges": ("piecewise",), "step_size": ("step",), "milestones": ("multistep",),
                    "gamma": ("step", "multistep"), "power": ("poly",), "min_lr": ("poly", "cosine")}
OPTIM_READ_BY = {"momentum": ("sgd", "rmsprop"), "nesterov": ("sgd",), "betas": ("adam", "adamw"),
                 "eps": ("adam", "adamw", "adadelta", "rmsprop"), "rho": ("adadelta",), "alpha": ("rmsprop",),
                 "centered": ("rmsprop",)}


AUGMENT_REPLACED_BY_RRC = ("rand_crop", "rotate", "max_shear_ratio", "zoom")  # draw_plan skips them for its box


def augment_unread(aug: dict[str, Any]) -> list[str]:
    """The augmentation options no switch of `aug` (a config mapping) reads: scale and ratio without
    random_resized_crop, the crop and warp options with it (its box replaces them), fill without a rotation,
    shear or zoom in constant fill mode, fill_mode without any of the three."""
    rrc = bool(aug.get("random_resized_crop"))
    warped = not rrc and any(aug.get(k) for k in ("rotate", "max_shear_ratio", "zoom"))
    unread = list(AUGMENT_REPLACED_BY_RRC) if rrc else ["scale", "ratio"]
    if not (warped and aug.get("fill_mode", "constant") == "constant"):
        unread.append("fill")
    return unread if warped else [*unread, "fill_mode"]


def refuse_unread_options(section: Any, name: str, read_by: dict[str, tuple[str, ...]], path: str, kind: str
                          ) -> None:
    """Refuse an option of `section` (a dataclass) given away from its default for another `name` than the
    ones that read it (`read_by`): it would be recorded with the run and never read (schedule.ranges with the
    constant schedule trained at optim.lr without a word)."""
    defaults = type(section)()
    for key, readers in read_by.items():
        default = getattr(defaults, key)
        if name not in readers and getattr(section, key) != default:
            shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
            names = " and ".join(filter(None, (", ".join(readers[:-1]), readers[-1])))
            raise UserError(f"{path}.{key} is read by the {names} {kind}, not {name}: set "
                            f"{path}.name={readers[0]}, or leave {path}.{key} out (on resume: --set "
                            f"{path}.{key}={shown})")


def _bounded(where: str, value: float | None, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> None:
    """Raise a one-line UserError unless `value` (None passes) is a finite number in the range."""
    if value is None:
        return
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    ok = math.isfinite(number) and (low < number if low_open else low <= number) and \
        (number < high if high_open else number <= high)
    if not ok:
        def num(v: float) -> str:
            return f"{int(v):,}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"

        rng = f"{'(' if low_open else '['}{num(low)}, {num(high)}{')' if high_open else ']'}"
        raise UserError(f"{where} must be a finite number in {rng}, got {value!r}")


def check_file_name(value: str, key: str, kind: str = "file", taken: tuple[str, ...] = ()) -> None:
    """Names that become files or folders of a run: plain names only, so nothing is written outside it; none of
    `taken` (names the folder's own files take, in any case: Dataset.json is dataset.json on macOS and Windows)."""
    bad = not isinstance(value, str) or not value or value.startswith(".") or ".." in value or \
        any(c in "/\\:" or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in value)  # ESC, ...
    if bad or value != value.strip():  # 'x ' beside 'x': two folders that print alike
        raise UserError(f"{key} must be a plain {kind} name (no path separators, '..', surrounding spaces or "
                        f"control characters such as tabs, newlines or ESC, not starting with '.'), got {value!r}")
    if value.casefold() in (name.casefold() for name in taken):
        raise UserError(f"{key} {value!r} is a name the folder's own files take ({', '.join(taken)}); choose "
                        f"another name")


@dataclass
class ModelConfig:
    name: str = "lenet"
    num_classes: int | None = None  # None: taken from the data
    in_channels: int | None = None  # None: taken from the data
    pretrained: str | None = None  # a torchvision state dict or a deepvision checkpoint
    args: dict[str, Any] = field(default_factory=dict)  # builder keyword arguments

    def validate(self, path: str) -> None:
        _bounded(f"{path}.num_classes", self.num_classes, 1, MAX_CLASSES)
        _bounded(f"{path}.in_channels", self.in_channels, 1, 1024)
        own = next((k for k in ("num_classes", "in_channels") if k in self.args), None)
        if own is not None:  # the builder gets them from the two keys above; given twice, a TypeError
            raise UserError(f"{path}.args.{own} is set by {path}.{own}; give it there")


@dataclass
class AugmentConfig:
    """Training-time augmentation, named after the reference record iterator's options."""

    rand_crop: bool = False  # random image_size window (otherwise centre crop)
    rand_mirror: bool = False  # horizontal flip with p = 0.5
    rotate: float = 0.0  # degrees
    rotation_mode: Literal["uniform", "fixed"] | None = None  # None: profile (modern uniform, reference fixed +a)
    max_shear_ratio: float = 0.0
    zoom: float = 0.0  # scale each axis by U(1 - zoom, 1 + zoom) about the centre (Keras zoom_range)
    fill: int = 255  # value for pixels uncovered by rotation/shear/zoom (reference: white)
    fill_mode: Literal["constant", "nearest"] = "constant"  # nearest: repeat the edge pixels (Keras' default)
    random_resized_crop: bool = False
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])

    def validate(self, path: str) -> None:
        _bounded(f"{path}.rotate", self.rotate, 0, 360)
        _bounded(f"{path}.max_shear_ratio", self.max_shear_ratio, 0, 1)
        _bounded(f"{path}.zoom", self.zoom, 0, 0.9)
        if not 0 <= self.fill <= 255:
            raise UserError(f"{path}.fill must be in 0..255, got {self.fill}")
        for key in ("scale", "ratio"):
            pair = getattr(self, key)
            if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or not 0 < pair[0] <= pair[1]:
                raise UserError(f"{path}.{key} must be [low, high] with 0 < low <= high, got {pair}")

    @property
    def active(self) -> bool:
        return bool(
            self.rand_crop or self.rand_mirror or self.rotate or self.max_shear_ratio or self.zoom
            or self.random_resized_crop
        )

    def refuse_unread(self, path: str) -> None:
        """Refuse an option that no switch given reads (scale without random_resized_crop, rotate with it, fill
        without a rotation, shear or zoom): it would be recorded with the run and never read."""
        defaults = AugmentConfig()
        warp = "rotate, max_shear_ratio or zoom" + (" (without random_resized_crop)" if self.random_resized_crop
                                                     else "")
        by = {"scale": "is read only with random_resized_crop: true",
              "ratio": "is read only with random_resized_crop: true",
              "fill": f"is read only with {warp} and fill_mode constant", "fill_mode": f"is read only with {warp}",
              **dict.fromkeys(AUGMENT_REPLACED_BY_RRC, "is not read with random_resized_crop: true (its random box "
                              "replaces the crop, rotation, shear and zoom)")}
        for key in augment_unread(self.__dict__):
            if getattr(self, key) != getattr(defaults, key):
                shown = str(getattr(defaults, key)).replace("'", "").lower()
                raise UserError(f"{path}.{key} {by[key]}; leave it out (on resume: --set {path}.{key}={shown})")


@dataclass
class DataConfig:
    source: str = "digits"  # digits | mnist | mnist_text | folder | lst | rec | hdf5 | synthetic
    format: str | None = None  # alias of `source` (`data.format: rec`); when set it wins
    root: str | None = None
    train: str | None = "train"  # split (or file) used for training
    val: str | None = None  # None: carve val_fraction out of train
    test: str | None = "test"
    val_fraction: float = 0.0
    test_fraction: float = 0.0  # carve a test split out of train (when the source has none); never with a named test
    split_seed: int = 42
    max_samples: int | None = None  # keep only the first N samples of each split (smoke runs)
    batch_size: int = 64  # per device
    eval_batch_size: int | None = None
    workers: int | None = None  # loader processes; None: automatic
    image_size: int | None = None  # square input fed to the model; None: the source's native size
    resize: int | None = None  # shorter side before cropping; None: no resize
    channels: int | None = None  # 1 or 3; None: the source's native channels
    scale: float = 1 / 255  # multiply raw 0..255 values by this before mean/std
    mean: list[float] | str | None = None  # per channel, in the scaled units, or a mean JSON path (0..255)
    std: list[float] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shuffle: bool | None = None  # reshuffle every epoch; None: profile (modern yes, reference one fixed order)
    last_batch: Literal["keep", "drop", "pad", "rollover"] = "keep"
    skip_corrupt: bool = False
    max_skipped_fraction: float = 0.1  # with skip_corrupt: fail when more of an epoch's samples are unreadable
    options: dict[str, Any] = field(default_factory=dict)  # source-specific settings

    def validate(self, path: str) -> None:
        if self.format is not None:  # one name for the data kind in the resolved config
            self.source, self.format = self.format, None
        if not 0.0 <= self.max_skipped_fraction <= 1.0:
            raise UserError(f"{path}.max_skipped_fraction must be in [0, 1], got {self.max_skipped_fraction}")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise UserError(f"{path}.{key} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise UserError(f"{path}.val_fraction + {path}.test_fraction must be below 1")
        for key, high in (("batch_size", MAX_BATCH), ("eval_batch_size", MAX_BATCH), ("image_size", MAX_SIDE),
                          ("resize", MAX_SIDE)):
            _bounded(f"{path}.{key}", getattr(self, key), 1, high)
        if self.max_samples is not None and self.max_samples <= 0:
            raise UserError(f"{path}.max_samples must be a positive integer, got {self.max_samples}")
        if self.channels not in (None, 1, 3):
            raise UserError(f"{path}.channels must be 1 or 3, got {self.channels}")
        _bounded(f"{path}.workers", self.workers, 0, 1024)
        _bounded(f"{path}.split_seed", self.split_seed, 0, MAX_SEED)
        _bounded(f"{path}.scale", self.scale, 0, 1e6, low_open=True)
        if isinstance(self.mean, list):
            for i, v in enumerate(self.mean):
                _bounded(f"{path}.mean[{i}]", v, -1e6, 1e6)
        for i, v in enumerate(self.std or []):
            _bounded(f"{path}.std[{i}]", v, 0, 1e6, low_open=True)
        self._check_file_options(f"{path}.options")

    def refuse_carving_over(self, role: str) -> None:
        """Refuse carving `role` out of train (its fraction set) while the data holds that split itself, under
        its default name too: the carved part would replace the data's own split unnoticed."""
        name = getattr(self, role)
        raise UserError(f"data.{role}_fraction is set but the data has its own {role} split '{name}'; use one of "
                        f"them (--set data.{role}_fraction=0 reads it, --set data.{role}=null carves one instead)")

    def _check_file_options(self, path: str) -> None:
        """The options the file sources share: `labels` names a class-names file, `idx` maps split names to
        .idx files, `data_key` names an HDF5 dataset (a number or a list there reached the readers as a
        traceback or as a damaged-file message)."""
        labels, idx, key = self.options.get("labels"), self.options.get("idx"), self.options.get("data_key")
        if key is not None and not isinstance(key, str):
            raise UserError(f"{path}.data_key must name an HDF5 dataset (text), got {key!r}")
        if labels is not None and not isinstance(labels, str):
            raise UserError(f"{path}.labels must be the path of a class-names file, got {labels!r}")
        if idx is not None and not (isinstance(idx, dict) and all(isinstance(v, str) for v in idx.values())):
            raise UserError(f"{path}.idx must map split names to .idx paths ({{train: a.idx}}), got {idx!r}")


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam | adamw | adadelta | rmsprop
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = True  # the reference decayed every parameter
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float | None = None  # None: the optimizer's own default
    rho: float = 0.95  # Adadelta (Keras default; PyTorch's is 0.9)
    alpha: float = 0.99  # RMSprop smoothing constant
    centered: bool = False  # RMSprop
    lr_mult: dict[str, float] = field(default_factory=dict)  # fine-tuning: {body: 0.1, head: 1.0}

    def validate(self, path: str) -> None:
        _bounded(f"{path}.lr", self.lr, 0, 100, low_open=True)
        _bounded(f"{path}.momentum", self.momentum, 0, 1, high_open=True)
        _bounded(f"{path}.weight_decay", self.weight_decay, 0, 1, high_open=True)
        if self.nesterov and self.momentum <= 0:
            raise UserError(f"{path}.nesterov needs {path}.momentum > 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise UserError(f"{path}.betas must be two numbers in [0, 1), got {self.betas}")
        _bounded(f"{path}.eps", self.eps, 0, 1, low_open=True)
        if not 0.0 <= self.rho <= 1.0:
            raise UserError(f"{path}.rho must be in [0, 1], got {self.rho}")
        if not 0.0 <= self.alpha < 1.0:
            raise UserError(f"{path}.alpha must be in [0, 1), got {self.alpha}")
        for part, mult in self.lr_mult.items():
            if part not in ("body", "head"):
                raise UserError(f"{path}.lr_mult keys are body and head, got {part!r}")
            if not isinstance(mult, (int, float)) or not 0 <= mult < float("inf"):
                raise UserError(f"{path}.lr_mult.{part} must be a number >= 0, got {mult!r}")


@dataclass
class ScheduleConfig:
    name: str = "constant"  # constant | piecewise | step | multistep | poly | cosine
    # piecewise: 1-based inclusive epoch ranges, e.g. ["1-50: 1e-2", "51-65: 1e-3"] or [[1, 50, 0.01], ...]
    ranges: list[Any] = field(default_factory=list)
    step_size: int = 30  # step: epochs between decays
    milestones: list[int] = field(default_factory=list)  # multistep: 1-based epochs where the decay starts
    gamma: float = 0.1
    power: float = 1.0  # poly
    min_lr: float = 0.0  # poly / cosine floor
    warmup_epochs: float = 0.0  # linear warm-up, per iteration
    warmup_start_factor: float = 0.1

    def validate(self, path: str) -> None:
        _bounded(f"{path}.gamma", self.gamma, 0, 1e6, low_open=True)
        _bounded(f"{path}.power", self.power, 0, 1e3, low_open=True)
        _bounded(f"{path}.min_lr", self.min_lr, 0, 100)
        _bounded(f"{path}.warmup_epochs", self.warmup_epochs, 0, 1e5)
        _bounded(f"{path}.warmup_start_factor", self.warmup_start_factor, 0, 1, low_open=True)
        for i, item in enumerate(self.ranges):  # the learning rates of "1-50: 1e-2" or [1, 50, 0.01]
            text = str(item[-1]) if isinstance(item, (list, tuple)) and item else str(item).rpartition(":")[2]
            try:
                lr = float(text)
            except ValueError:
                continue  # malformed ranges are reported by the schedule parser
            _bounded(f"{path}.ranges[{i}] learning rate", lr, 0, 100)
        if self.step_size <= 0:
            raise UserError(f"{path}.step_size must be a positive number of epochs, got {self.step_size}")
        if any(m <= 0 for m in self.milestones) or self.milestones != sorted(self.milestones):
            raise UserError(f"{path}.milestones must be increasing 1-based epochs, got {self.milestones}")


@dataclass
class FreezeConfig:
    """Fine-tuning's warm-up: train only the new head for the first epochs, then everything."""

    body_epochs: int = 0  # epochs with the body (every layer but the classifier head) frozen

    def validate(self, path: str) -> None:
        if self.body_epochs < 0:
            raise UserError(f"{path}.body_epochs must be >= 0, got {self.body_epochs}")


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA and AMX CPUs (engine/precision.py)
    channels_last: bool | None = None  # None: on (CPU and CUDA) for tasks that allow it
    compile: bool = False
    grad_accum: int = 1  # micro-batches per optimizer step
    global_batch: int | None = None  # keep a reference global batch: sets grad_accum = global / (batch x devices)
    clip_grad_norm: float | None = None
    label_smoothing: float = 0.0  # train_loss is the smoothed objective; val_loss plain cross-entropy
    sync_bn: bool = False
    log_every: int = 100  # speedometer line every N batches (the reference's "frequent")
    max_steps: int | None = None  # cap training batches per epoch (smoke runs)
    topk: int = 5
    reset_optimizer_on_resume: bool | None = None  # None: profile decides (reference: reset)
    tensorboard: bool | None = None  # None: event files when tensorboard is installed; true: require it
    progress: Literal["auto", "bar", "lines"] = "auto"
    # score the test split after training (best.pt; test_metrics.json): auto when the data has a test split
    # other than the val split; on: require one; off: never
    test: Literal["auto", "on", "off"] = "auto"
    test_every: int = 0  # also score it every N epochs (test_history.csv); 0: only after training
    freeze: FreezeConfig = field(default_factory=FreezeConfig)

    def validate(self, path: str) -> None:
        _bounded(f"{path}.epochs", self.epochs, 1, MAX_EPOCHS)
        _bounded(f"{path}.seed", self.seed, 0, MAX_SEED)
        _bounded(f"{path}.grad_accum", self.grad_accum, 1, MAX_BATCH)
        _bounded(f"{path}.global_batch", self.global_batch, 1, 2**24)
        for key in ("log_every", "topk"):
            if getattr(self, key) <= 0:
                raise UserError(f"{path}.{key} must be a positive integer, got {getattr(self, key)}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise UserError(f"{path}.max_steps must be a positive integer, got {self.max_steps}")
        _bounded(f"{path}.clip_grad_norm", self.clip_grad_norm, 0, 1e6, low_open=True)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"{path}.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _bounded(f"{path}.test_every", self.test_every, 0, 100_000)
        if self.test == "off" and self.test_every:
            raise UserError(f"{path}.test_every={self.test_every} needs {path}.test auto or on (it is off)")


@dataclass
class CheckpointConfig:
    prefix: str | None = None  # None: the model name (files are <prefix>-NNNN.pt)
    period: int = 1  # save every N epochs (plus last.pt and best.pt every epoch)
    # the newest N periodic checkpoints stay, plus those saved just before a learning-rate step; null keeps
    # all; best.pt and last.pt always stay. "auto": the profile decides (config/profile.py).
    keep: int | Literal["auto"] | None = "auto"
    monitor: str | None = None  # what best.pt tracks (a history column); None: the task's default (val_acc)

    def validate(self, path: str) -> None:
        if self.prefix is not None:
            check_file_name(self.prefix, f"{path}.prefix")
        if self.period <= 0:
            raise UserError(f"{path}.period must be a positive integer, got {self.period}")
        if self.keep is not None and self.keep != "auto" and (isinstance(self.keep, bool)
                                                             or not isinstance(self.keep, int) or self.keep <= 0):
            raise UserError(f"{path}.keep must be a positive integer, auto or null, got {self.keep!r}")


@dataclass
class Config:
    name: str | None = None  # run name; None: derived from the model and data
    description: str = ""
    task: str = "classification"  # what is trained: classification (detection when installed)
    profile: Profile = "modern"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    reference: dict[str, Any] = field(default_factory=dict)  # published results of a recipe, for journals

    def checkpoint_prefix(self) -> str:
        """The periodic checkpoints' prefix: checkpoint.prefix, else the model name (':' as '_' in a file name)."""
        return self.checkpoint.prefix or self.model.name.replace(":", "_")

    def validate(self, path: str) -> None:
        from deepvision.config.names import check_names
        from deepvision.config.profile import apply_profile

        apply_profile(self)
        check_names(self)
        if self.name is not None:
            check_file_name(self.name, "name", "folder")
