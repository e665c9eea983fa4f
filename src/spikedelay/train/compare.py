"""A delay ablation study: variants (none / fixed / learned) × seeds under one budget.

Layout of a study folder::

    OUT/runs/<variant>-s<seed>/  one ordinary run folder each (:mod:`spikedelay.train.run_folder`)
    OUT/results.json             every run, and mean ± std per variant
    OUT/results.md               the table, the exact command, the protocol, the figures
    OUT/figures/*.png            validation curves, delay histograms, σ, changed delays

Identical budgets by construction: every run uses the same resolved config apart from
``model.delays`` and ``train.seed`` (checked before anything trains). Resumable: each run folder
resumes or, once finished, is only read back (``train_run`` does that), so rerunning the same
command after an interruption finishes the missing runs and rewrites the summary.

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
                "delays_changed")

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class RunSpec:
    """One cell of the study: which variant, which seed, its resolved config and folder."""

    variant: str
    seed: int
    cfg: RunConfig
    run_dir: Path

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


def plan_study(config: str, variants: Sequence[str], seeds: Sequence[int], out: Path, *,
               data: str | None = None, overrides: Sequence[str] = ()) -> list[RunSpec]:
    """Resolve every run's config (all problems before any training) and check equal budgets."""
    clash = [o for o in overrides if o.split("=", 1)[0].strip() in VARIED_KEYS]
    if clash:
        raise ConfigError(f"--set {', '.join(clash)}: the study sets model.delays and train.seed "
                          "itself; use --variants and --seeds")
    if not seeds:
        raise ConfigError("--seeds must be at least 1")
    base = list(overrides) + ([f"data.root={data}"] if data is not None else [])
    specs = [
        RunSpec(v, s, load_config(config, [*base, f"model.delays={v}", f"train.seed={s}"]),
                Path(out) / "runs" / f"{v}-s{s}")
        # Seed-major, so an interrupted study already holds every variant for the first seeds.
        for s in seeds for v in parse_variants(variants)
    ]
    budgets = {json.dumps(_budget(spec.cfg), sort_keys=True) for spec in specs}
    if len(budgets) != 1:  # cannot happen through load_config; guards future config hooks
        raise ConfigError("runs of the study differ in more than model.delays and train.seed")
    return specs


def _budget(cfg: RunConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    d["model"].pop("delays")
    d["train"].pop("seed")
    return d


def run_study(config: str, variants: str | Sequence[str], seeds: int, out: Path, *,
              data: str | None = None, overrides: Sequence[str] = (),
              command: str | None = None, progress: bool = True,
              log: Reporter = print) -> dict[str, Any]:
    """Train (or resume, or read back) every variant × seed, then write results and figures.

    ``seeds`` is a count: seeds 0 … n-1. Returns what ``results.json`` holds (plus in-memory
    per-epoch histories and delays under ``_``-prefixed keys).
    """
    out = Path(out)
    seed_list = list(range(seeds))
    variants = parse_variants(variants)
    specs = plan_study(config, variants, seed_list, out, data=data, overrides=overrides)
    if command is None:
        command = study_command(config, variants, seeds, out, data=data,
                                overrides=overrides)
    for i, spec in enumerate(specs, 1):
        log(f"[{i}/{len(specs)}] {spec.variant} delays, seed {spec.seed} → {spec.run_dir}")
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


def final_delays(cfg: RunConfig, run_dir: Path) -> list[torch.Tensor]:
    """Integer delays per delay layer of the selected model (``best.safetensors``).

    The selected model, not the last epoch's: it is the one whose accuracy the study reports,
    and ``best.safetensors`` is small enough to keep with the results (``last`` also holds the
    optimiser state).
    """
    from spikedelay.model import DelaySNN

    model = DelaySNN(cfg.model)
    model.load_state_dict(load_checkpoint(run_dir / "best.safetensors")["model"])
    return [layer.integer_delays() for layer in model.delay_layers()]


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
        if spec.variant != "none":
            init, end = initial_delays(spec.cfg), final_delays(spec.cfg, spec.run_dir)
            changed = [float((a != b).double().mean()) for a, b in zip(init, end, strict=True)]
            n = [a.numel() for a in init]
            row["delays_changed_per_layer"] = changed
            row["delays_changed"] = sum(c * k for c, k in zip(changed, n, strict=True)) / sum(n)
            delay_data[spec.name] = (init, end)
            if spec.variant == "fixed":
                init_ok.append(row["delays_changed"] == 0.0)
        runs.append({**row, "history": history})
    variants = list(dict.fromkeys(spec.variant for spec in specs))
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
        "budget": _budget(cfg),
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
    lines = [
        "# Delay ablation: no delays vs fixed random delays vs learned delays",
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
        f"{t['batch_size']}, lr {t['lr']} (positions {t['lr_positions']}); only `model.delays` "
        f"and `train.seed` differ. Seeds: {', '.join(map(str, results['seeds']))}.",
        "",
        "| variant | runs | parameters | val acc. | test acc. | best epoch | train time "
        "| delays changed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in results["variants"]:
        s = results["summary"][v]
        lines.append(
            f"| {v} | {s['test_acc']['n']} | {s['params']['mean']:,.0f} | {_pm(s['val_acc'])} | "
            f"{_pm(s['test_acc'])} | {_pm(s['best_epoch'], 1, 1, '')} | "
            f"{_pm(s['train_time_s'], 1, 0, ' s')} | {_pm(s['delays_changed'], 100, 0)} |"
        )
    lines += [
        "",
        "Mean ± sample standard deviation over seeds. *Delays changed*: share of synapses whose "
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
                  data: str | None = None, overrides: Sequence[str] = ()) -> str:
    """The ``spikedelay compare`` command line that runs this study."""
    args = ["spikedelay", "compare", "--config", config, "--variants", ",".join(variants),
            "--seeds", str(seeds)]
    if data is not None:
        args += ["--data", str(data)]
    for o in overrides:
        args += ["--set", o]
    args += ["--out", str(out)]
    return shlex.join(args)
