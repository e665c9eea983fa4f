"""Why does validation accuracy sit far above test on SynthDigits? Per-speaker accuracy of the
trained runs on their validation and test speakers, related to how the speakers are made.

Run from the repository root (CPU, ~2 min; reads the runs' best.safetensors, trains nothing):

    python results/synthdigits/split_study/study.py

Writes, next to this script: ``per_speaker.csv`` (one row per run × split × speaker),
``speakers.csv`` (speaker metadata and training-free difficulty), ``summary.json`` (the numbers
quoted in report.md) and ``figures/*.png``.

Nothing here selects a model or a setting on test data: the test speakers are only described.
The split simulation at the end uses *training* speakers only (their leave-one-speaker-out
difficulty under a linear classifier) as the population.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "src"))

from spikedelay.checkpoint import load_checkpoint  # noqa: E402
from spikedelay.config import build_config  # noqa: E402
from spikedelay.data.hdf5 import find_split_files  # noqa: E402
from spikedelay.data.loaders import default_synthdigits_root, load_dataset  # noqa: E402
from spikedelay.data.speakers import (  # noqa: E402
    _ridge_predict,
    difficulty_strata,
    histogram_features,
    speaker_difficulty,
    speaker_table,
)
from spikedelay.train.loss import summed_softmax  # noqa: E402
from spikedelay.train.setup import build_model  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = sorted((ROOT / "results/synthdigits/runs").glob("*-s*")) + [
    ROOT / "results/synthdigits/full-width/learned-s0",
    HERE / "release-learned-s0",
]


def _run_dir(name: str) -> Path:
    return next(r for r in RUNS if r.name == name or f"{r.parent.name}/{r.name}" == name)


def run_config(run: Path):
    raw = yaml.safe_load((run / "config.yaml").read_text())
    if raw["data"].get("root"):
        raw["data"]["root"] = str((ROOT / raw["data"]["root"]).resolve())
    return build_config(raw)


@torch.no_grad()
def predict(model, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-summed softmax (N, C) and labels (N,) of the integer-delay model (eval mode)."""
    model.eval()
    outs, labs = [], []
    for x, lengths, labels in batches:
        v_out, out_lengths = model(x, lengths)
        outs.append(summed_softmax(v_out, out_lengths))
        labs.append(labels)
    return torch.cat(outs), torch.cat(labs)


def data_name(cfg) -> str:
    return "release" if cfg.data.root is None else Path(cfg.data.root).name


# --------------------------------------------------------------------------------------------
# per-speaker accuracy of each run


def evaluate_runs() -> tuple[list[dict], dict[str, object]]:
    rows, splits_by_data = [], {}
    for run in RUNS:
        cfg = run_config(run)
        splits = load_dataset(cfg.data, seed=cfg.train.seed, protocol=cfg.train.protocol,
                              progress=False)
        splits_by_data.setdefault(data_name(cfg), splits)
        model = build_model(cfg, torch.device("cpu"))
        model.load_state_dict(load_checkpoint(run / "best.safetensors")["model"])
        for split in ("val", "test"):
            fs = getattr(splits, split)
            m, labels = predict(model, fs.batches(256, shuffle=False))
            correct = (m.argmax(-1) == labels).numpy()
            spk = fs.speakers.numpy()
            for s in np.unique(spk):
                rows.append({"run": run.name if run.parent.name == "runs" else
                             f"{run.parent.name}/{run.name}", "data": data_name(cfg),
                             "delays": cfg.model.delays,
                             "hidden": "x".join(map(str, cfg.model.hidden)),
                             "seed": cfg.train.seed, "split": split, "speaker": int(s),
                             "n": int((spk == s).sum()), "correct": int(correct[spk == s].sum())})
        print(f"{run.name}: evaluated", flush=True)
    return rows, splits_by_data


# --------------------------------------------------------------------------------------------
# speakers: how they were made, and what the frames say about them


def frames_features(fs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: duration (frames), spikes, spectral centroid (feature index; 0 = high)."""
    x = fs.frames.float()
    spikes = x.sum((1, 2))
    per_feature = x.sum(1)
    idx = torch.arange(x.shape[-1], dtype=torch.float32)
    centroid = (per_feature * idx).sum(-1) / spikes.clamp_min(1)
    return fs.lengths.numpy(), spikes.numpy(), centroid.numpy()


def speaker_study(splits) -> list[dict]:
    """One row per speaker (train file and test file): metadata, frame statistics and the
    accuracy of a linear classifier that never saw that speaker (leave-one-speaker-out over
    the training speakers; trained on all training speakers for the test speakers)."""
    full_train = _full_train(splits)
    n_classes = len(splits.class_names)
    rows = []
    h_tr = histogram_features(full_train.frames, full_train.lengths)
    h_te = histogram_features(splits.test.frames, splits.test.lengths)
    y_tr, y_te = full_train.labels.numpy(), splits.test.labels.numpy()
    s_tr = full_train.speakers.numpy()
    loso = speaker_difficulty(full_train.frames, full_train.lengths, full_train.labels,
                              full_train.speakers)  # the loader's val_split=difficulty score
    test_ok = _ridge_predict(h_tr, y_tr, h_te, n_classes) == y_te
    # split-half: the same leave-one-speaker-out accuracy on the even and on the odd classes
    # separately, to see whether difficulty is a property of the speaker (it then carries over
    # from one half of the words to the other)
    half = {}
    for parity in (0, 1):
        words = y_tr % 2 == parity
        ok = np.zeros(len(y_tr), bool)
        for sp in np.unique(s_tr):
            out, inside = words & (s_tr == sp), words & (s_tr != sp)
            ok[out] = _ridge_predict(h_tr[inside], y_tr[inside], h_tr[out], n_classes) \
                == y_tr[out]
        half[parity] = {int(sp): float(ok[words & (s_tr == sp)].mean()) for sp in np.unique(s_tr)}
    for name, fs, ok in (("train", full_train, None), ("test", splits.test, test_ok)):
        dur, spikes, centroid = frames_features(fs)
        spk = fs.speakers.numpy()
        for s in np.unique(spk):
            m = spk == s
            rows.append({"speaker": int(s), "file": name, "frames": float(dur[m].mean()),
                         "spikes": float(spikes[m].mean()), "centroid": float(centroid[m].mean()),
                         "linear_acc": loso[int(s)] if ok is None else float(ok[m].mean()),
                         "linear_acc_even": half[0].get(int(s), float("nan")),
                         "linear_acc_odd": half[1].get(int(s), float("nan"))})
    return rows


def _full_train(splits):
    """The whole training file (train + validation speakers), speakers sorted as in the file."""
    from spikedelay.data.sets import FramedSet

    a, b = splits.train, splits.val
    t = max(a.frames.shape[1], b.frames.shape[1])
    pad = lambda f: torch.nn.functional.pad(f, (0, 0, 0, t - f.shape[1]))  # noqa: E731
    return FramedSet(frames=torch.cat([pad(a.frames), pad(b.frames)]),
                     lengths=torch.cat([a.lengths, b.lengths]),
                     labels=torch.cat([a.labels, b.labels]),
                     speakers=torch.cat([a.speakers, b.speakers]))


def family(variant: str) -> str:
    """A voice variant's family: its name without trailing digits (klatt3 -> klatt)."""
    return re.sub(r"\d+$", "", variant).lower()


def metadata(data: str) -> dict[int, dict]:
    root = default_synthdigits_root() if data == "release" else ROOT / "../shared/data" / data
    files = find_split_files(root, "synthdigits")
    out = {}
    for path in (files["train"], files["test"]):
        for s, meta in speaker_table(path).items():
            out[s] = {**meta, "family": family(meta["variant"])}
    return out


# --------------------------------------------------------------------------------------------
# analysis


def subset_std(acc: np.ndarray, k: int) -> float:
    """Std of the mean of k speakers drawn without replacement from ``acc`` (exact)."""
    means = [np.mean(c) for c in itertools.combinations(acc, k)] if len(acc) <= 20 else None
    if means is not None:
        return float(np.std(means))
    n = len(acc)
    return float(np.std(acc) * np.sqrt((n - k) / (k * (n - 1))))


def simulate_splits(difficulty: dict[int, float], strata: dict[int, str], n_val: int,
                    draws: int = 4000, seed: int = 0) -> dict[str, float]:
    """Std over draws of the mean difficulty of the validation speakers, for a random and an
    accent-stratified choice of ``n_val`` speakers (the loader's two ``data.val_split``s)."""
    from spikedelay.data.speakers import stratified_val_speakers

    ids = np.array(sorted(difficulty))
    d = np.array([difficulty[i] for i in ids])
    rng = np.random.default_rng(seed)
    random_means = [d[rng.permutation(len(ids))[:n_val]].mean() for _ in range(draws)]
    strat_means = []
    for i in range(draws):
        chosen = stratified_val_speakers(ids, {int(s): strata[int(s)] for s in ids}, n_val,
                                         seed=i)
        strat_means.append(np.mean([difficulty[int(s)] for s in chosen]))
    return {"random": float(np.std(random_means)), "stratified": float(np.std(strat_means)),
            "mean": float(np.mean(d))}


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    rows, splits_by_data = evaluate_runs()
    with open(HERE / "per_speaker.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    summary: dict[str, object] = {"runs": {}, "data": {}}
    speakers_rows = []
    for data, splits in splits_by_data.items():
        meta = metadata(data)
        study = speaker_study(splits)
        for r in study:
            speakers_rows.append({"data": data, **r, **meta.get(r["speaker"], {})})
        by_spk = {r["speaker"]: r for r in study}
        data_rows = [r for r in rows if r["data"] == data]
        # per run: val/test accuracy, val speakers, what a 5-speaker subset of test would vary by
        for run in sorted({r["run"] for r in data_rows}):
            mine = [r for r in data_rows if r["run"] == run]
            acc = {sp: {r["speaker"]: r["correct"] / r["n"] for r in mine if r["split"] == sp}
                   for sp in ("val", "test")}
            n_val = len(acc["val"])
            history = [json.loads(line) for line in
                       (_run_dir(run) / "metrics.jsonl").read_text().splitlines()]
            vals = [h["val_acc"] for h in history if "val_acc" in h]
            summary["runs"][run] = {
                "best_val_minus_mean_last5": float(max(vals) - np.mean(vals[-5:])),
                "data": data,
                "val_acc": float(np.mean(list(acc["val"].values()))),
                "test_acc": float(np.mean(list(acc["test"].values()))),
                "val_speakers": {str(s): round(a, 3) for s, a in acc["val"].items()},
                "val_speakers_linear_acc": float(np.mean([by_spk[s]["linear_acc"]
                                                          for s in acc["val"]])),
                "test_per_speaker_std": float(np.std(list(acc["test"].values()))),
                "test_subset_std_k_val": subset_std(np.array(list(acc["test"].values())), n_val),
            }
        # speaker difficulty of the test speakers, over this data's runs
        test_acc = {}
        for r in data_rows:
            if r["split"] == "test":
                test_acc.setdefault(r["speaker"], []).append(r["correct"] / r["n"])
        mean_test = {s: float(np.mean(v)) for s, v in test_acc.items()}
        val_acc = {}
        for r in data_rows:
            if r["split"] == "val":
                val_acc.setdefault(r["speaker"], []).append(r["correct"] / r["n"])
        train_spk = [r for r in study if r["file"] == "train"]
        test_spk = [r for r in study if r["file"] == "test"]
        linear_train = {r["speaker"]: r["linear_acc"] for r in train_spk}
        ids_t = sorted(mean_test)
        d = {
            "test_speaker_acc": {str(s): round(mean_test[s], 3) for s in ids_t},
            "val_speaker_acc": {str(s): [round(a, 3) for a in v]
                                for s, v in sorted(val_acc.items())},
            "linear_acc_train_mean": float(np.mean([r["linear_acc"] for r in train_spk])),
            "linear_acc_test_mean": float(np.mean([r["linear_acc"] for r in test_spk])),
            "spearman_test_acc_vs_linear": spearman([mean_test[s] for s in ids_t],
                                                    [by_spk[s]["linear_acc"] for s in ids_t]),
            "spearman_test_acc_vs_frames": spearman([mean_test[s] for s in ids_t],
                                                    [by_spk[s]["frames"] for s in ids_t]),
            "spearman_test_acc_vs_spikes": spearman([mean_test[s] for s in ids_t],
                                                    [by_spk[s]["spikes"] for s in ids_t]),
            "spearman_test_acc_vs_centroid": spearman([mean_test[s] for s in ids_t],
                                                      [by_spk[s]["centroid"] for s in ids_t]),
            "frames_mean": {f: float(np.mean([r["frames"] for r in rr]))
                            for f, rr in (("train", train_spk), ("test", test_spk))},
            "spikes_mean": {f: float(np.mean([r["spikes"] for r in rr]))
                            for f, rr in (("train", train_spk), ("test", test_spk))},
        }
        if all("pitch" in meta.get(s, {}) for s in ids_t):
            for key in ("pitch", "wpm"):
                d[f"spearman_test_acc_vs_{key}"] = spearman([mean_test[s] for s in ids_t],
                                                            [meta[s][key] for s in ids_t])
        # the same factors against the training-free difficulty of the training speakers
        ids_tr = sorted(linear_train)
        keys = ["frames", "spikes", "centroid"]
        if all("pitch" in meta.get(s, {}) for s in ids_tr):
            keys += ["pitch", "wpm"]
        d["spearman_linear_loso_vs"] = {
            k: round(spearman([linear_train[s] for s in ids_tr],
                              [meta[s][k] if k in ("pitch", "wpm") else by_spk[s][k]
                               for s in ids_tr]), 3) for k in keys}
        # accents: mean SNN accuracy of test speakers per accent; linear LOSO accuracy per accent
        acc_by_accent: dict[str, list[float]] = {}
        for s in ids_t:
            acc_by_accent.setdefault(meta[s]["accent"], []).append(mean_test[s])
        d["test_acc_by_accent"] = {a: round(float(np.mean(v)), 3)
                                   for a, v in sorted(acc_by_accent.items())}
        lin_by_accent: dict[str, list[float]] = {}
        for r in train_spk:
            lin_by_accent.setdefault(meta[r["speaker"]]["accent"], []).append(r["linear_acc"])
        d["linear_loso_by_accent"] = {a: round(float(np.mean(v)), 3)
                                      for a, v in sorted(lin_by_accent.items())}
        between = np.var([np.mean(v) for v in lin_by_accent.values()])
        d["linear_loso_accent_share_of_variance"] = float(
            between / max(np.var(list(linear_train.values())), 1e-12))
        # families shared between the training file and the test file
        fam_train = {meta[r["speaker"]]["family"] for r in train_spk}
        d["test_families_seen_in_train"] = sum(meta[s]["family"] in fam_train for s in ids_t)
        d["test_speakers"] = len(ids_t)
        # the split simulation on training speakers only
        strata = {s: meta[s]["accent"] for s in linear_train}
        n_train = len(linear_train)
        even = {r["speaker"]: r["linear_acc_even"] for r in train_spk}
        odd = {r["speaker"]: r["linear_acc_odd"] for r in train_spk}
        d["split_half_spearman_even_vs_odd"] = spearman([even[s] for s in ids_tr],
                                                        [odd[s] for s in ids_tr])
        # difficulty strata from the even words (terciles), judged on the odd words
        by_difficulty = difficulty_strata(even)
        for frac in (0.1, 0.2):
            n_val = min(max(1, int(frac * n_train + 0.5)), n_train - 1)
            d[f"split_sim_val_fraction_{frac}"] = {
                "n_val": n_val, **simulate_splits(linear_train, strata, n_val),
                "odd_words_random_vs_difficulty_terciles": simulate_splits(
                    odd, by_difficulty, n_val)}
        summary["data"][data] = d

    with open(HERE / "speakers.csv", "w", newline="") as f:
        keys = sorted({k for r in speakers_rows for k in r})
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(speakers_rows)
    (HERE / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plots(rows, speakers_rows, summary)
    print(json.dumps(summary, indent=1))


def plots(rows, speakers_rows, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (HERE / "figures").mkdir(exist_ok=True)
    runs = summary["runs"]
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, r in runs.items():
        ax.scatter(r["test_acc"], r["val_acc"], c="C1" if r["data"] == "release" else "C0")
        ax.annotate(name.split("/")[-1] if "/" not in name else name, (r["test_acc"], r["val_acc"]),
                    fontsize=6)
    ax.plot([0.3, 1], [0.3, 1], "k:", lw=0.8)
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("validation accuracy")
    ax.set_title("each run: validation vs test (blue: synthdigits-900, orange: release)",
                 fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "figures/val_vs_test.png", dpi=130)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, data in zip(axes, ("synthdigits-900", "release"), strict=True):
        acc = summary["data"].get(data, {}).get("test_speaker_acc", {})
        if not acc:
            continue
        lin = {str(r["speaker"]): r["linear_acc"] for r in speakers_rows
               if r["data"] == data and r["file"] == "test"}
        voice = {str(r["speaker"]): f'{r["accent"]}+{r["variant"]}' for r in speakers_rows
                 if r["data"] == data and r["file"] == "test"}
        order = sorted(acc, key=acc.get)
        ax.barh(range(len(order)), [acc[s] for s in order], color="C0", label="SNN (mean of runs)")
        ax.scatter([lin[s] for s in order], range(len(order)), c="k", s=10, zorder=3,
                   label="linear classifier")
        ax.set_yticks(range(len(order)), [f"{s} {voice[s]}" for s in order], fontsize=6)
        ax.set_xlim(0, 1)
        ax.set_xlabel("accuracy on the speaker's 20 words")
        ax.set_title(f"{data}: test speakers", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(HERE / "figures/test_speakers.png", dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
