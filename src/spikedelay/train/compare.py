"""A study: variants × seeds under one budget (the delay ablation none / fixed / learned, or
any grid of config keys: ``--grid model.delay_kind=synaptic,axonal,dendritic``).

Variants come from one of three front ends, all :class:`Variant` (a name and the config
settings it changes): ``--variants none,fixed,learned`` (values of ``model.delays``, the
original ablation), ``--grid KEY=V1,V2,...`` (several: their product; names are the values,
joined by ``_``) and ``--variant NAME:KEY=V,KEY=V`` (explicit, repeatable, e.g. for a study
that is not a product). Grid and explicit variants may be given together; ``--variants`` is
used only when neither is.

Layout of a study folder::

    OUT/runs/<variant>-s<seed>/  one ordinary run folder each (:mod:`spikedelay.train.run_folder`)
    OUT/results.json             every run, and mean ± std per variant
    OUT/results.md               the table, the exact command, the protocol, the figures
    OUT/figures/*.png            validation curves, delay histograms, σ, changed delays

Identical budgets by construction: every run uses the same resolved config apart from the
keys the variants set and ``train.seed`` (checked before anything trains). Resumable: each run
folder resumes or, once finished, is only read back (``train_run`` does that), so rerunning the
same command after an interruption finishes the missing runs and rewrites the summary.

Initial delays are not stored by a run, so they are *rebuilt*: ``torch.manual_seed(seed)`` then
``DelaySNN(cfg.model)`` replays the initialisation ``train_run`` performs (it seeds, reads the
data with its own generator, then builds the model). Fixed-delay runs never move their delays,
so their checkpoints verify the rebuild: ``init_check`` in ``results.json`` says whether every
fixed run's final delays equal the rebuilt ones.

Statistics: mean and the sample standard deviation (n - 1) over seeds; std is 0 for one seed.
"""

from __future__ import annotations

import json
import shlex
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spikedelay.atomic import atomic_write_bytes
from spikedelay.checkpoint import load_checkpoint
from spikedelay.config import RunConfig, load_config
from spikedelay.errors import ConfigError
from spikedelay.train.run import train_run
from spikedelay.train.setup import protocol_label

VARIANTS = ("none", "fixed", "learned")
VARIED_KEYS = ("model.delays", "train.seed")
# Per-run numbers summarised as mean ± std; all but the last come from the run's metrics.json.
SUMMARY_KEYS = ("val_acc", "test_acc", "params", "train_time_s", "best_epoch",
                "delays_changed", "active_delays", "s_per_epoch")

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    """One row of the study: its name and the ``section.key=value`` settings it applies."""

    name: str
    settings: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        return [s.split("=", 1)[0].strip() for s in self.settings]


@dataclass(frozen=True)
class RunSpec:
    """One cell of the study: which variant, which seed, its resolved config and folder."""

    variant: str
    seed: int
    cfg: RunConfig
    run_dir: Path
    settings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


def parse_variants(text: str | Sequence[str]) -> list[str]:
    """``"none,fixed,learned"`` → list; unknown or repeated names are a ConfigError."""
    names = [v.strip() for v in text.split(",")] if isinstance(text, str) else list(text)
    names = [v for v in names if v]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names or len(set(names)) != len(names):
        raise ConfigError(
            f"--variants {','.join(names) or '(empty)'}: give distinct names from "
            f"{', '.join(VARIANTS)}, comma-separated"
        )
    return names


def split_values(text: str) -> list[str]:
    """Split at commas outside brackets: ``"[128, 128],[256]"`` → ``["[128, 128]", "[256]"]``."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _safe_name(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "-" for c in text.replace(" ", ""))
    return keep.strip("-") or "x"


def delay_variants(text: str | Sequence[str]) -> list[Variant]:
    """``--variants none,fixed,learned``: one variant per ``model.delays`` value."""
    return [Variant(v, (f"model.delays={v}",)) for v in parse_variants(text)]


def grid_variants(grid: Sequence[str]) -> list[Variant]:
    """``["model.delay_kind=synaptic,axonal", "model.delay_sparsity=0,0.5"]`` → their product.

    A variant's name is its values joined by ``_`` (characters other than letters, digits and
    ``._-`` become ``-``), e.g. ``axonal_0.5``.
    """
    axes: list[tuple[str, list[str]]] = []
    for item in grid:
        key, sep, values = item.partition("=")
        key = key.strip()
        _, dot, name = key.partition(".")
        vals = [v for v in split_values(values) if v]
        if not sep or not dot or not name or not vals:
            raise ConfigError(f"--grid {item!r}: expected section.key=V1,V2,..., e.g. "
                              "model.delay_kind=synaptic,axonal,dendritic")
        if len(set(vals)) != len(vals):
            raise ConfigError(f"--grid {item!r}: repeated value")
        if key in (k for k, _ in axes):
            raise ConfigError(f"--grid {key} given twice")
        axes.append((key, vals))
    combos: list[list[tuple[str, str]]] = [[]]
    for key, vals in axes:
        combos = [c + [(key, v)] for c in combos for v in vals]
    return [Variant("_".join(_safe_name(v) for _, v in c), tuple(f"{k}={v}" for k, v in c))
            for c in combos if c]


def explicit_variant(text: str) -> Variant:
    """``--variant NAME:KEY=V,KEY=V`` (``NAME:`` alone: the config unchanged)."""
    name, sep, body = text.partition(":")
    settings = tuple(p for p in split_values(body) if p) if sep else ()
    bad = [p for p in settings if "=" not in p or "." not in p.split("=", 1)[0]]
    if not sep or not name.strip() or _safe_name(name) != name.strip() or bad:
        raise ConfigError(f"--variant {text!r}: expected NAME:section.key=value,... with NAME "
                          "of letters, digits and ._-, e.g. axonal-S0.5:model.delay_kind=axonal,"
                          "model.delay_sparsity=0.5")
    return Variant(name.strip(), settings)


def study_variants(variants: str | Sequence[str] = "none,fixed,learned", grid: Sequence[str] = (),
                   explicit: Sequence[str] = ()) -> list[Variant]:
    """The study's variants from the three front ends (see module docstring), checked."""
    chosen = grid_variants(grid) + [explicit_variant(e) for e in explicit] if (
        grid or explicit) else delay_variants(variants)
    names = [v.name for v in chosen]
    if len(set(names)) != len(names):
        raise ConfigError(f"variant names must be distinct, got {', '.join(names)}")
    return chosen


def plan_study(config: str, variants: Sequence[str] | Sequence[Variant], seeds: Sequence[int],
               out: Path, *, data: str | None = None,
               overrides: Sequence[str] = ()) -> list[RunSpec]:
    """Resolve every run's config (all problems before any training) and check equal budgets.

    ``variants``: :class:`Variant` objects, or ``model.delays`` names (the delay ablation).
    """
    chosen = [v for v in variants if isinstance(v, Variant)]
    if len(chosen) != len(variants):
        chosen = delay_variants(list(variants))
    varied = sorted({k for v in chosen for k in v.keys} | {"train.seed"})
    clash = [o for o in overrides if o.split("=", 1)[0].strip() in varied]
    if clash:
        raise ConfigError(f"--set {', '.join(clash)}: the study sets {', '.join(varied)} "
                          "itself; use --variants/--grid/--variant and --seeds")
    if not seeds:
        raise ConfigError("--seeds must be at least 1")
    base = list(overrides) + ([f"data.root={data}"] if data is not None else [])
    problems, specs = [], []
    # Seed-major, so an interrupted study already holds every variant for the first seeds.
    for s in seeds:
        for v in chosen:
            try:
                cfg = load_config(config, [*base, *v.settings, f"train.seed={s}"])
            except ConfigError as err:
                if s == seeds[0]:
                    problems.append(f"variant {v.name}: {err}")
                continue
            specs.append(RunSpec(v.name, s, cfg, Path(out) / "runs" / f"{v.name}-s{s}",
                                 v.settings))
    if problems:
        raise ConfigError("\n".join(problems))
    budgets = {json.dumps(_budget(spec.cfg, varied), sort_keys=True) for spec in specs}
    if len(budgets) != 1:  # cannot happen through load_config; guards future config hooks
        raise ConfigError(f"runs of the study differ in more than {', '.join(varied)}")
    return specs


def _budget(cfg: RunConfig, varied: Sequence[str] = VARIED_KEYS) -> dict[str, Any]:
    d = cfg.to_dict()
    for key in varied:
        section, _, name = key.partition(".")
        d.get(section, {}).pop(name, None)
    return d


def _varied(specs: Sequence[RunSpec]) -> list[str]:
    keys = {s.split("=", 1)[0].strip() for spec in specs for s in spec.settings}
    return sorted(keys | {"train.seed"})


def run_study(config: str, variants: str | Sequence[str], seeds: int, out: Path, *,
              data: str | None = None, overrides: Sequence[str] = (),
              grid: Sequence[str] = (), explicit: Sequence[str] = (),
              command: str | None = None, progress: bool = True,
              log: Reporter = print) -> dict[str, Any]:
    """Train (or resume, or read back) every variant × seed, then write results and figures.

    ``variants``: ``model.delays`` names (used when neither ``grid`` nor ``explicit`` is given);
    ``grid``: ``"KEY=V1,V2"`` items (their product); ``explicit``: ``"NAME:KEY=V,..."`` items.
    ``seeds`` is a count: seeds 0 … n-1. Returns what ``results.json`` holds (plus in-memory
    per-epoch histories and delays under ``_``-prefixed keys).

    Example (the delay-kind comparison)::

        run_study("quick", "", 3, Path("out"), grid=["model.delay_kind=synaptic,axonal"])
    """
    out = Path(out)
    seed_list = list(range(seeds))
    chosen = study_variants(variants, grid, explicit)
    specs = plan_study(config, chosen, seed_list, out, data=data, overrides=overrides)
    if command is None:
        command = study_command(config, [v.name for v in chosen], seeds, out, data=data,
                                overrides=overrides, grid=grid, explicit=explicit)
    for i, spec in enumerate(specs, 1):
        what = " ".join(spec.settings) or "as configured"
        log(f"[{i}/{len(specs)}] {spec.variant} ({what}), seed {spec.seed} → {spec.run_dir}")
        final = train_run(spec.cfg, spec.run_dir, progress=progress, log=log)
        log(f"[{i}/{len(specs)}] {spec.name}: val {_pct(final['val_acc'])}, "
            f"test {_pct(final['test_acc'])}, {final['train_time_s']:.0f} s")
    results = collect_results(specs, out, config=config, command=command)
    write_results(results, out)
    log(f"results: {out / 'results.md'}")
    return results


# ------------------------------------------------------------------------------------ collecting
def initial_delays(cfg: RunConfig) -> list[torch.Tensor]:
    """Integer delays per delay layer right after initialisation, rebuilt from the seed."""
    from spikedelay.model import DelaySNN

    torch.manual_seed(cfg.train.seed)
    model = DelaySNN(cfg.model)
    return [layer.integer_delays() for layer in model.delay_layers()]


def _selected_model(cfg: RunConfig, run_dir: Path):
    """The selected model of a run (``best.safetensors``), rebuilt from its config."""
    from spikedelay.model import DelaySNN

    model = DelaySNN(cfg.model)
    model.load_state_dict(load_checkpoint(run_dir / "best.safetensors")["model"])
    return model


def final_delays(cfg: RunConfig, run_dir: Path) -> list[torch.Tensor]:
    """Integer delays per delay layer of the selected model (``best.safetensors``).

    The selected model, not the last epoch's: it is the one whose accuracy the study reports,
    and ``best.safetensors`` is small enough to keep with the results (``last`` also holds the
    optimiser state).
    """
    return [layer.integer_delays() for layer in _selected_model(cfg, run_dir).delay_layers()]


def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def summarise(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and sample std (n - 1; 0 for one value) of the non-missing values."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"n": 0, "mean": None, "std": None}
    return {"n": len(xs), "mean": statistics.fmean(xs),
            "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}


def collect_results(specs: Sequence[RunSpec], out: Path, *, config: str,
                    command: str) -> dict[str, Any]:
    """Read every finished run folder back and aggregate it (no training, no figures)."""
    runs, delay_data, init_ok = [], {}, []
    for spec in specs:
        final = json.loads((spec.run_dir / "metrics.json").read_text())
        history = _read_history(spec.run_dir)
        row: dict[str, Any] = {
            "variant": spec.variant, "seed": spec.seed,
            "run_dir": str(spec.run_dir.relative_to(out)),
            **{k: final.get(k) for k in ("val_acc", "test_acc", "params", "train_time_s",
                                         "best_epoch", "epochs", "test_samples")},
            "delays_changed": None, "delays_changed_per_layer": None,
        }
        m = spec.cfg.model
        with torch.random.fork_rng(devices=[]):
            selected = _selected_model(spec.cfg, spec.run_dir)
        row["delays"] = selected.num_delays()
        row["active_delays"] = selected.num_active_delays()
        row["s_per_epoch"] = (final["train_time_s"] / final["epochs"]
                              if final.get("train_time_s") is not None and final.get("epochs")
                              else None)
        if m.delays != "none":
            init = initial_delays(spec.cfg)
            end = [layer.integer_delays() for layer in selected.delay_layers()]
            changed = [float((a != b).double().mean()) for a, b in zip(init, end, strict=True)]
            n = [a.numel() for a in init]
            row["delays_changed_per_layer"] = changed
            row["delays_changed"] = sum(c * k for c, k in zip(changed, n, strict=True)) / sum(n)
            delay_data[spec.name] = (init, end)
            if m.delays == "fixed" and (m.delay_sparsity == 0 or m.delay_mask == "random"):
                init_ok.append(row["delays_changed"] == 0.0)
        runs.append({**row, "history": history})
    variants = list(dict.fromkeys(spec.variant for spec in specs))
    settings = {spec.variant: list(spec.settings) for spec in specs}
    delay_modes = {spec.variant: spec.cfg.model.delays for spec in specs}
    summary = {
        v: {k: summarise([r[k] for r in runs if r["variant"] == v]) for k in SUMMARY_KEYS}
        for v in variants
    }
    cfg = specs[0].cfg
    return {
        "command": command,
        "config": config,
        "protocol": cfg.train.protocol,
        "protocol_label": protocol_label(cfg.train.protocol),
        "variants": variants,
        "seeds": list(dict.fromkeys(spec.seed for spec in specs)),
        "varied": _varied(specs),
        "settings": settings,
        "delay_modes": delay_modes,
        "budget": _budget(cfg, _varied(specs)),
        "init_check": ("verified: fixed runs' final delays equal the rebuilt initial ones"
                       if init_ok and all(init_ok) else
                       "FAILED: a fixed run's delays differ from the rebuilt initial ones; "
                       "the init histograms and changed fractions are unreliable"
                       if init_ok else "unverified (no fixed-delay runs in this study)"),
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k != "history"} for r in runs],
        "_histories": {f"{r['variant']}-s{r['seed']}": r["history"] for r in runs},
        "_delays": delay_data,
    }


# -------------------------------------------------------------------------------------- writing
def write_results(results: dict[str, Any], out: Path) -> None:
    """Write figures, ``results.json`` (without the in-memory extras) and ``results.md``."""
    from spikedelay.train.compare_plots import make_figures

    figures = make_figures(results, out / "figures")
    results["figures"] = {k: str(p.relative_to(out)) for k, p in figures.items()}
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    atomic_write_bytes(out / "results.json", (json.dumps(public, indent=2) + "\n").encode())
    atomic_write_bytes(out / "results.md", results_markdown(public).encode())


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _pm(stat: dict[str, Any], scale: float = 100.0, digits: int = 1, unit: str = " %") -> str:
    if stat["mean"] is None:
        return "–"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}{unit}"


def results_markdown(results: dict[str, Any]) -> str:
    """The study as a markdown page: protocol, command, budget, tables, figures."""
    b = results["budget"]
    m, t, d = b["model"], b["train"], b["data"]
    runs = results["runs"]
    samples = runs[0].get("test_samples")
    varied = results.get("varied", list(VARIED_KEYS))
    ablation = sorted(varied) == sorted(VARIED_KEYS)
    title = ("Delay ablation: no delays vs fixed random delays vs learned delays" if ablation
             else "Study: " + " vs ".join(results["variants"]))
    differ = ", ".join(f"`{k}`" for k in varied)
    lines = [
        f"# {title}",
        "",
        f"**Protocol:** {results['protocol_label']}. Accuracies are of the integer-delay model "
        f"selected on {'the test set' if results['protocol'] == 'test-selected' else 'validation'}"
        f"; test set: {samples} samples.",
        "",
        "**Command:**",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"**Budget (every run):** config `{results['config']}`, data `{d['root'] or 'shipped'}`, "
        f"hidden {m['hidden']}, K = {m['max_delay']}, {t['epochs']} epochs, batch "
        f"{t['batch_size']}, lr {t['lr']} (positions {t['lr_positions']}); only {differ} "
        f"differ. Seeds: {', '.join(map(str, results['seeds']))}.",
        "",
    ]
    if not ablation:
        lines += ["| variant | settings |", "|---|---|"]
        lines += [f"| {v} | {', '.join(f'`{x}`' for x in results['settings'].get(v, [])) or '–'} |"
                  for v in results["variants"]]
        lines.append("")
    lines += [
        "| variant | runs | parameters | active delays | val acc. | test acc. | best epoch "
        "| train time | s / epoch | delays changed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in results["variants"]:
        s = results["summary"][v]
        active = s.get("active_delays", {"mean": None})
        per_epoch = s.get("s_per_epoch", {"mean": None})
        n_active = "–" if active["mean"] is None else f"{active['mean']:,.0f}"
        lines.append(
            f"| {v} | {s['test_acc']['n']} | {s['params']['mean']:,.0f} | {n_active} | "
            f"{_pm(s['val_acc'])} | {_pm(s['test_acc'])} | {_pm(s['best_epoch'], 1, 1, '')} | "
            f"{_pm(s['train_time_s'], 1, 0, ' s')} | {_pm(per_epoch, 1, 1, ' s')} | "
            f"{_pm(s['delays_changed'], 100, 0)} |"
        )
    lines += [
        "",
        "Mean ± sample standard deviation over seeds. *Active delays*: delay parameters not "
        "switched off by a sparsity mask, in the selected model. *Delays changed*: share of "
        "delays (per synapse, or per channel for axonal/dendritic kinds) whose "
        "integer delay in the selected model differs from its initial one (initial delays "
        f"rebuilt from the seed; {results['init_check']}).",
        "",
        "## Every run",
        "",
        "| run | val acc. | test acc. | best epoch | train time | delays changed |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        changed = "–" if r["delays_changed"] is None else f"{100 * r['delays_changed']:.0f} %"
        lines.append(f"| `{r['run_dir']}` | {_pct(r['val_acc'])} | {_pct(r['test_acc'])} | "
                     f"{r['best_epoch']}/{r['epochs']} | {r['train_time_s']:.0f} s | {changed} |")
    captions = {
        "val_curves": "Validation accuracy per epoch (mean ± std over seeds)",
        "delay_histograms": "Learned integer delays at initialisation and in the selected model "
                            "(all seeds pooled)",
        "sigma": "Gaussian width σ of the learned delay kernels per epoch",
        "delays_changed": "Share of synapses whose integer delay changed, per layer",
    }
    lines += ["", "## Figures", ""]
    for key, rel in results.get("figures", {}).items():
        caption = captions.get(key, key)
        lines += [f"**{caption}.**", "", f"![{caption}]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


def study_command(config: str, variants: Sequence[str], seeds: int, out: Path, *,
                  data: str | None = None, overrides: Sequence[str] = (),
                  grid: Sequence[str] = (), explicit: Sequence[str] = ()) -> str:
    """The ``spikedelay compare`` command line that runs this study."""
    args = ["spikedelay", "compare", "--config", config]
    if grid or explicit:
        for g in grid:
            args += ["--grid", g]
        for e in explicit:
            args += ["--variant", e]
    else:
        args += ["--variants", ",".join(variants)]
    args += ["--seeds", str(seeds)]
    if data is not None:
        args += ["--data", str(data)]
    for o in overrides:
        args += ["--set", o]
    args += ["--out", str(out)]
    return shlex.join(args)
