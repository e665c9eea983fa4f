"""Typed run configuration: YAML recipes, ``--set key=value`` overrides, and validation.

Why one place: the data framing, the model and the training recipe travel together in every
checkpoint and export, so evaluation, streaming and export can never disagree with training.
Validation lists *every* problem before any work starts (nanoGPT-style unknown-key errors, but
without ``exec``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from spikedelay.errors import ConfigError

DelayMode = Literal["learned", "fixed", "none"]
DelayKind = Literal["synaptic", "axonal", "dendritic"]
Interpolation = Literal["gaussian", "triangle"]
DelayMaskKind = Literal["random", "learned"]
Padding = Literal["reference", "causal"]
Protocol = Literal["validation", "test-selected"]
DatasetName = Literal["synthdigits", "shd", "ssc", "gsc"]
ValSplit = Literal["speakers", "stratified", "difficulty"]
Neuron = Literal["lif", "adlif", "se-adlif"]
Reset = Literal["hard", "subtract"]
Surrogate = Literal["atan", "triangle", "slayer"]
Recurrence = Literal["none", "plain", "delayed"]
Norm = Literal["batchnorm", "none"]


@dataclass
class DataConfig:
    """Where the data is and how events become frames (carried into checkpoints and exports)."""

    dataset: DatasetName = "synthdigits"  # which reader: synthdigits/shd/ssc are SHD-layout HDF5
    root: str | None = None  # folder with the files; None = the SynthDigits release shipped with us
    bin_ms: float = 10.0  # frame length of the fixed time grid from t = 0
    channel_group: int = 5  # sum this many neighbouring cochlea channels (700 -> 140)
    max_frames: int | None = None  # crop long samples (None = keep every frame)
    val_fraction: float = 0.1  # share of training *speakers* held out for model selection
    val_split: ValSplit = "speakers"  # random speakers | stratified (accents) | difficulty
    cache: bool = True  # cache framed tensors on disk, keyed by file content + framing
    # training-only augmentation, applied in order: [{name: time_shift, max_shift: 10}, ...]
    # (names and parameters: spikedelay.data.augment, docs/data.md)
    augment: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ModelConfig:
    """DelaySNN architecture (REFERENCE §1): [delay -> BN -> LIF -> dropout] x n + readout."""

    in_features: int = 140  # after channel grouping
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    n_classes: int = 20
    max_delay: int = 25  # K, taps of the delay kernel (delays 0 .. K-1 steps)
    kernel_count: int = 1  # Gaussian bumps per synapse
    delays: DelayMode = "learned"  # learned | fixed (random, frozen) | none (plain linear)
    padding: Padding = "reference"  # reference: left K-1, right (K-1)//2 per layer
    delay_kind: DelayKind = "synaptic"  # one delay per synapse | per input | per output channel
    interpolation: Interpolation = "gaussian"  # training kernel of learned delays
    delay_sparsity: float = 0.0  # share of delays switched off (delay 0), in [0, 1)
    delay_mask: DelayMaskKind = "random"  # which: drawn once from the seed | learned top-k
    dropout: float = 0.4
    tau: float = 1.005  # membrane time constant in steps (SpikingJelly convention)
    readout_tau: float = 1.005
    threshold: float = 1.0
    surrogate_alpha: float = 5.0  # sharpness α of the atan and slayer surrogates
    # -- neurons, recurrence and layer parts (REFERENCE §9; docs/models.md) --
    neuron: Neuron = "lif"  # lif | adlif (Bittar & Garner) | se-adlif (Baronig et al.)
    reset: Reset = "hard"  # hard (to 0, detached) | subtract (θ, differentiated)
    surrogate: Surrogate = "atan"  # atan | triangle | slayer
    surrogate_width: float = 1.0  # half-width γ of the triangle surrogate
    surrogate_scale: float = 0.4  # factor c of the slayer surrogate
    recurrent: Recurrence | list[Recurrence] = "none"  # per hidden layer, or one for all
    recurrent_dropout: float = 0.0  # on the delivered recurrent current, mask per sequence
    recurrent_width: Literal["fixed", "learned"] = "fixed"  # triangle half-width 1+σ or learned
    recurrent_delay_init: Literal["uniform", "half-normal"] = "uniform"
    recurrent_delay_range: list[float] = field(default_factory=lambda: [10.0, 30.0])  # uniform
    recurrent_delay_std: float = 12.0  # half-normal |N(0, std²)| steps
    bias: bool = False  # a bias on every feed-forward layer (hidden and readout)
    norm: Norm = "batchnorm"  # after each hidden layer's feed-forward map, or none
    layer_delays: list[DelayMode] | None = None  # per delay layer (hidden..., readout)
    readout_tau_trainable: bool = False  # learn the readout's τ per class (clamped >= 1)

    def recurrence(self) -> list[str]:
        """The recurrence of each hidden layer (``recurrent`` expanded to a list)."""
        if isinstance(self.recurrent, list):
            return list(self.recurrent)
        return [self.recurrent] * len(self.hidden)

    def delay_modes(self) -> list[str]:
        """The delay mode of each delay layer, hidden layers then the readout."""
        if self.layer_delays is not None:
            return list(self.layer_delays)
        return [self.delays] * (len(self.hidden) + 1)


@dataclass
class TrainConfig:
    """The paper's recipe (REFERENCE §1) plus our honest-evaluation defaults."""

    epochs: int = 150
    batch_size: int = 256
    lr: float = 5e-3  # OneCycle max lr for weights (stepped once per epoch)
    weight_decay: float = 1e-5  # weights only, never BatchNorm or positions
    lr_positions: float = 0.1  # Adam lr for positions, cosine to 0 over all epochs
    sigma_epochs_fraction: float = 0.25  # sigma anneals over epochs * this
    sigma_floor: float = 0.23  # final |sigma| (sigma_eff = 0.5)
    protocol: Protocol = "validation"  # validation (honest) | test-selected (the reference's)
    masked_loss: bool = True  # ignore padded steps in loss and BatchNorm
    seed: int = 0
    deterministic: bool = False  # bit-reproducible on CPU (slower)
    allow_tf32: bool = False  # TF32 matmuls/convolutions on CUDA (≈5e-4 error; docs/gpu.md)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_every: int = 1  # epochs between validation passes
    threads: int = 0  # torch CPU threads (0 = torch's default)
    init_from: str | None = None  # start from this run's (or checkpoint file's) weights
    lr_recurrent_delays: float = 5e-2  # Adam lr of recurrent delays (and widths), cosine to 0
    recurrent_sigma_init: float = 10.0  # DelRec: σ_e = init · (decay^(100/E))^e per epoch
    recurrent_sigma_decay: float = 0.95


@dataclass
class RunConfig:
    """Everything one training run needs; saved resolved as ``RUNDIR/config.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # The parameter count the recipe must build; checked by tests (every shipped recipe declares
    # one, as the top-level key ``expected_params``). A statement about the recipe, not a setting
    # of the run: it is not saved with a run (``to_dict``), so it never changes a run's identity.
    expected_params: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
RECIPE_KEYS: dict[str, Any] = {"expected_params": int | None}  # top-level keys besides sections


def builtin_configs() -> list[str]:
    """Names of the recipes shipped in ``spikedelay/configs`` (shd, ssc, gsc, quick, ...)."""
    folder = resources.files("spikedelay") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text = path.read_text()
        where = str(path)
    else:
        res = resources.files("spikedelay") / "configs" / f"{name_or_path}.yaml"
        if not res.is_file():
            known = ", ".join(builtin_configs())
            raise ConfigError(f"unknown config '{name_or_path}': use one of {known} or a YAML path")
        text = res.read_text()
        where = f"builtin config '{name_or_path}'"
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping of sections")
    return raw


def _parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules (so 1e-3, true, [256, 256], null all work)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """Turn ``["model.delays=none", ...]`` into nested dicts; malformed pairs are ConfigErrors."""
    out: dict[str, dict[str, Any]] = {}
    problems = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            problems.append(f"--set {pair!r}: expected section.key=value, e.g. model.delays=none")
            continue
        out.setdefault(section, {})[name] = _parse_scalar(value)
    if problems:
        raise ConfigError("\n".join(problems))
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in extra.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is list:
        return f"list of {_describe(typing.get_args(hint)[0])}"
    if origin is dict:
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def _range_problems(cfg: RunConfig) -> list[str]:
    m, t, d = cfg.model, cfg.train, cfg.data
    checks = [
        (m.max_delay >= 1, "model.max_delay", m.max_delay, "an integer >= 1"),
        (m.kernel_count >= 1, "model.kernel_count", m.kernel_count, "an integer >= 1"),
        (m.kernel_count == 1 or m.delay_kind == "synaptic", "model.kernel_count",
         m.kernel_count, f"1 with model.delay_kind = {m.delay_kind} (one delay per channel)"),
        (0.0 <= m.delay_sparsity < 1.0, "model.delay_sparsity", m.delay_sparsity, "in [0, 1)"),
        (m.delay_sparsity == 0 or m.delays != "none", "model.delay_sparsity",
         m.delay_sparsity, "0 with model.delays = none (there are no delays to switch off)"),
        (0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "in [0, 1)"),
        (len(m.hidden) >= 1 and all(h >= 1 for h in m.hidden), "model.hidden", m.hidden,
         "a non-empty list of integers >= 1"),
        (m.in_features >= 1, "model.in_features", m.in_features, "an integer >= 1"),
        (m.n_classes >= 2, "model.n_classes", m.n_classes, "an integer >= 2"),
        (m.tau >= 1.0, "model.tau", m.tau, ">= 1.0 (time constant in steps)"),
        (m.readout_tau >= 1.0, "model.readout_tau", m.readout_tau, ">= 1.0"),
        (m.threshold > 0, "model.threshold", m.threshold, "> 0"),
        (m.surrogate_alpha > 0, "model.surrogate_alpha", m.surrogate_alpha, "> 0"),
        (m.surrogate_width > 0, "model.surrogate_width", m.surrogate_width, "> 0"),
        (m.surrogate_scale > 0, "model.surrogate_scale", m.surrogate_scale, "> 0"),
        (not isinstance(m.recurrent, list) or len(m.recurrent) == len(m.hidden),
         "model.recurrent", m.recurrent,
         f"one value or a list of {len(m.hidden)} (one per hidden layer)"),
        (0.0 <= m.recurrent_dropout < 1.0, "model.recurrent_dropout", m.recurrent_dropout,
         "in [0, 1)"),
        (len(m.recurrent_delay_range) == 2 and 0 <= m.recurrent_delay_range[0]
         <= m.recurrent_delay_range[1], "model.recurrent_delay_range", m.recurrent_delay_range,
         "[low, high] with 0 <= low <= high (steps)"),
        (m.recurrent_delay_std > 0, "model.recurrent_delay_std", m.recurrent_delay_std, "> 0"),
        (m.layer_delays is None or len(m.layer_delays) == len(m.hidden) + 1,
         "model.layer_delays", m.layer_delays,
         f"null or a list of {len(m.hidden) + 1} (hidden layers, then the readout)"),
        (t.lr_recurrent_delays >= 0, "train.lr_recurrent_delays", t.lr_recurrent_delays,
         ">= 0"),
        (t.recurrent_sigma_init >= 0, "train.recurrent_sigma_init", t.recurrent_sigma_init,
         ">= 0"),
        (0 < t.recurrent_sigma_decay <= 1, "train.recurrent_sigma_decay",
         t.recurrent_sigma_decay, "in (0, 1]"),
        (t.epochs >= 1, "train.epochs", t.epochs, "an integer >= 1"),
        (t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1"),
        (t.lr > 0, "train.lr", t.lr, "> 0"),
        (t.weight_decay >= 0, "train.weight_decay", t.weight_decay, ">= 0"),
        (t.lr_positions >= 0, "train.lr_positions", t.lr_positions, ">= 0"),
        (0.0 < t.sigma_epochs_fraction <= 1.0, "train.sigma_epochs_fraction",
         t.sigma_epochs_fraction, "in (0, 1]"),
        (t.sigma_floor > 0, "train.sigma_floor", t.sigma_floor, "> 0"),
        (t.eval_every >= 1, "train.eval_every", t.eval_every, "an integer >= 1"),
        (t.threads >= 0, "train.threads", t.threads, "an integer >= 0"),
        (t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"), "train.device",
         t.device, "auto, cpu, cuda or cuda:N"),
        (d.bin_ms > 0, "data.bin_ms", d.bin_ms, "> 0 (milliseconds)"),
        (d.channel_group >= 1, "data.channel_group", d.channel_group, "an integer >= 1"),
        (d.max_frames is None or d.max_frames >= 1, "data.max_frames", d.max_frames,
         "null or an integer >= 1"),
        (0.0 <= d.val_fraction < 1.0, "data.val_fraction", d.val_fraction, "in [0, 1)"),
        (t.protocol == "test-selected" or d.val_fraction > 0, "data.val_fraction",
         d.val_fraction, "> 0 with the validation protocol"),
    ]
    problems = [f"{key} = {val!r}: must be {allowed}" for ok, key, val, allowed in checks if not ok]
    problems += _data_problems(d)
    if d.augment:
        from spikedelay.data.augment import augment_problems  # imports nothing of ours back

        problems += augment_problems(d.augment, d.dataset)
    return problems


def _data_problems(d: DataConfig) -> list[str]:
    """A missing data folder, or one without the split files, is caught before any work."""
    if d.root is None:
        return []
    root = Path(d.root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "folder does not exist"
        return [f"data.root = {d.root!r}: {what}"]
    if d.dataset == "gsc":
        return []  # its folder layout is checked by the GSC reader
    from spikedelay.data.hdf5 import find_split_files  # h5py only when a folder is given
    from spikedelay.errors import DataError

    try:
        find_split_files(root, d.dataset)
    except DataError as err:
        why = str(err).removeprefix(f"{root}: ").replace("\n", "\n    ")
        return [f"data.root = {d.root!r}: {why}"]
    return []


def build_config(raw: dict[str, Any]) -> RunConfig:
    """Make a RunConfig from nested dicts, reporting every unknown key and wrong type at once.

    Example::

        >>> build_config({"model": {"hidden": [64]}}).model.hidden
        [64]
        >>> build_config({"model": {"colour": "blue"}, "train": {"epochs": 0}})
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        spikedelay.errors.ConfigError: invalid configuration:
          unknown key 'model.colour': allowed are in_features, hidden, ...
          train.epochs = 0: must be an integer >= 1
    """
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for name in raw:
        if name not in SECTIONS and name not in RECIPE_KEYS:
            allowed = ", ".join([*SECTIONS, *RECIPE_KEYS])
            problems.append(f"unknown section '{name}': allowed are {allowed}")
    recipe: dict[str, Any] = {}
    for key, hint in RECIPE_KEYS.items():
        if key in raw:
            if _type_ok(raw[key], hint):
                recipe[key] = raw[key]
            else:
                problems.append(f"{key} = {raw[key]!r}: must be {_describe(hint)}")
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            problems.append(f"section '{name}' must be a mapping, got {type(values).__name__}")
            values = {}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in hints:
                allowed = ", ".join(hints)
                problems.append(f"unknown key '{name}.{key}': allowed are {allowed}")
                continue
            if isinstance(value, int) and not isinstance(value, bool) and hints[key] is float:
                value = float(value)
            if isinstance(value, str) and _type_ok(0.5, hints[key]) and _FLOAT.fullmatch(value):
                value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
            if not _type_ok(value, hints[key]):
                problems.append(
                    f"{name}.{key} = {value!r}: must be {_describe(hints[key])}"
                )
                continue
            kwargs[key] = value
        sections[name] = cls(**kwargs)
    cfg = RunConfig(**sections, **recipe)
    # Range checks run on the keys that parsed, so one message lists every problem.
    problems += _range_problems(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return cfg


Overrides = Mapping[str, Any] | list[str]


def _nested_overrides(overrides: Overrides | None) -> dict[str, dict[str, Any]]:
    """``["train.epochs=2"]`` (CLI syntax) or ``{"train.epochs": 2}`` → nested dicts."""
    if overrides is None:
        return {}
    if isinstance(overrides, list):
        return parse_overrides(overrides)
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides must be a mapping or a list of 'key=value' strings, "
                          f"got {type(overrides).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, dot, name = str(key).partition(".")
        if not dot or not name:
            raise ConfigError(f"override {key!r}: expected 'section.key', e.g. 'train.epochs'")
        out.setdefault(section, {})[name] = value
    return out


def load_config(name_or_path: str = "quick", overrides: Overrides | None = None) -> RunConfig:
    """Load a builtin recipe or YAML file, apply ``section.key`` overrides, validate.

    ``overrides`` is the CLI's ``["train.epochs=2"]`` or a mapping ``{"train.epochs": 2}``.

    >>> cfg = load_config("quick", {"train.epochs": 2, "model.hidden": [64, 64]})
    >>> cfg.train.epochs, cfg.model.hidden, cfg.model.max_delay
    (2, [64, 64], 25)
    """
    raw = _read_yaml(name_or_path)
    raw = _merge(raw, _nested_overrides(overrides))
    return build_config(raw)


def with_overrides(cfg: RunConfig, overrides: Overrides) -> RunConfig:
    """A validated copy of ``cfg`` with ``overrides`` applied (``cfg`` is not changed)."""
    return build_config(_merge(cfg.to_dict(), _nested_overrides(overrides)))


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
