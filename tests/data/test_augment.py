"""Training-time augmentation: each transform against a slow, obviously correct loop or an
exact expectation; invariants of every transform; seeding by (seed, epoch); and, through the
real training path, that validation and test batches are never augmented."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spikedelay.config import build_config, dump_config, load_config
from spikedelay.data.augment import (
    TRANSFORMS,
    Augmenter,
    BandLimit,
    ClassBlend,
    Context,
    EventDrop,
    TimeShift,
    blend,
    cochlea_feature_hz,
    move_counts,
    parse_specs,
    same_class_partners,
    shift_in_time,
    stretch_time,
    thin,
    valid_mask,
    warp_channels,
)
from spikedelay.errors import ConfigError


def _counts(b=4, t=12, c=9, seed=0, lengths=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 5, (b, t, c), generator=g).float()
    lengths = torch.tensor(lengths if lengths is not None else [t, t - 3, 5, 1][:b])
    return x * valid_mask(lengths, t), lengths


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# the pure functions against slow loops


def test_shift_in_time_equals_a_loop_per_channel():
    x, lengths = _counts()
    shifts = torch.tensor([[3, -2, 0, 11, -12, 1, 5, -1, 2]] * 4)
    out = shift_in_time(x, lengths, shifts, x.shape[1])
    ref = torch.zeros_like(x)
    for b in range(4):
        for c in range(9):
            for t in range(x.shape[1]):
                src = t - int(shifts[b, c])
                if 0 <= src < int(lengths[b]):
                    ref[b, t, c] = x[b, src, c]
    assert torch.equal(out, ref)


def test_time_shift_keeps_lengths_labels_and_zero_past_length():
    x, lengths = _counts()
    labels = torch.tensor([0, 1, 2, 1])
    y, new_lengths = TimeShift(max_shift=4)(x, lengths, labels, Context(), _gen())
    assert torch.equal(new_lengths, lengths)
    assert y.shape == x.shape and (y >= 0).all() and torch.equal(y, y.round())
    assert (y * ~valid_mask(lengths, y.shape[1]) == 0).all()
    assert not torch.equal(y, x)
    # each channel's spikes are a contiguous window of the original channel: never more
    assert (y.sum(1) <= x.sum(1)).all()


def test_move_counts_keeps_integers_and_has_the_interpolation_expectation():
    x = torch.tensor([[[7.0, 0.0, 3.0, 10.0]]])
    pos = torch.tensor([0.25, 1.0, 2.5, 2.9])
    draws = torch.stack([move_counts(x, pos, 5, _gen(i)) for i in range(3000)])
    assert torch.equal(draws, draws.round()) and (draws >= 0).all()
    assert torch.equal(draws.sum(-1), torch.full_like(draws.sum(-1), 20.0))  # nothing lost
    expected = torch.zeros(5)
    for v, p in zip(x.flatten().tolist(), pos.tolist(), strict=True):  # linear interpolation
        k, f = math.floor(p), p - math.floor(p)
        expected[k] += v * (1 - f)
        expected[k + 1] += v * f
    assert torch.allclose(draws.mean(0).flatten(), expected, atol=0.12)


def test_stretch_time_keeps_every_count_and_scales_lengths():
    x, lengths = _counts(t=20, lengths=[20, 17, 5, 1])
    factors = torch.tensor([1.0, 1.3, 0.7, 2.0])
    y, new_lengths = stretch_time(x, lengths, factors, _gen())
    assert torch.equal(y[0, :20], x[0]) and int(new_lengths[0]) == 20  # factor 1: identity
    assert torch.equal(y.sum((1, 2)), x.sum((1, 2)))
    assert torch.equal(y, y.round()) and (y >= 0).all()
    # last frame t = L-1 lands at (L - 1/2) f - 1/2; the length covers its upper neighbour
    for b in range(4):
        last = (int(lengths[b]) - 0.5) * float(factors[b]) - 0.5
        assert int(new_lengths[b]) == math.ceil(max(last, 0.0)) + 1
    assert (y * ~valid_mask(new_lengths, y.shape[1]) == 0).all()


def test_stretch_time_by_two_puts_a_frame_between_its_two_slots():
    x = torch.zeros(1, 3, 1)
    x[0, 1, 0] = 1000.0  # frame 1 -> position (1.5 * 2) - 0.5 = 2.5: half to 2, half to 3
    ys = torch.stack([stretch_time(x, torch.tensor([3]), torch.tensor([2.0]), _gen(i))[0]
                      for i in range(20)])
    assert torch.equal(ys[:, 0, 2, 0] + ys[:, 0, 3, 0], torch.full((20,), 1000.0))
    assert abs(float(ys[:, 0, 2, 0].mean()) - 500.0) < 40.0


def test_warp_channels_integer_shift_is_a_zero_filled_slide():
    x, _ = _counts()
    y = warp_channels(x, torch.ones(4), torch.full((4,), 2.0), _gen())
    ref = torch.zeros_like(x)
    ref[..., 2:] = x[..., :-2]
    assert torch.equal(y, ref)
    assert torch.equal(warp_channels(x, torch.ones(4), torch.zeros(4), _gen()), x)


def test_warp_channels_stretch_about_the_centre_keeps_the_centre_channel():
    x = torch.zeros(1, 1, 9)
    x[0, 0, 4] = 5.0  # the centre of 9 channels does not move under any stretch
    y = warp_channels(x, torch.tensor([1.4]), torch.zeros(1), _gen())
    assert torch.equal(y, x)
    x2 = torch.zeros(1, 1, 9)
    x2[0, 0, 8] = 5.0  # the edge channel moves out: (8 - 4) * 1.4 + 4 = 9.6 > 8 -> dropped
    assert float(warp_channels(x2, torch.tensor([1.4]), torch.zeros(1), _gen()).sum()) == 0.0


def test_thinning_has_the_binomial_mean_and_bounds():
    x = torch.full((4000,), 10.0)
    y = thin(x, torch.tensor(0.3), _gen())
    assert (y >= 0).all() and (y <= x).all() and torch.equal(y, y.round())
    se = math.sqrt(10 * 0.3 * 0.7 / 4000)
    assert abs(float(y.mean()) - 3.0) < 5 * se


def test_event_drop_expected_counts_scale_by_one_minus_rate():
    x, lengths = _counts(b=1, t=50, c=40, lengths=[50])
    x = x.expand(400, -1, -1).contiguous()
    lengths = lengths.expand(400).contiguous()
    y, new_lengths = EventDrop(rate=(0.25, 0.25))(x, lengths, torch.zeros(400, dtype=torch.long),
                                                  Context(), _gen())
    assert torch.equal(new_lengths, lengths)
    ratio = float(y.sum() / x.sum())
    assert abs(ratio - 0.75) < 0.01
    assert torch.equal(EventDrop(rate=(0.0, 0.0))(x, lengths, lengths, Context(), _gen())[0], x)


def _blend_reference(a, la, b, lb):
    """DelRec's blend with keep = 1 (no thinning), written as a plain loop."""
    def com(x, n):
        mass = x[:n].sum(-1)
        return float((mass * torch.arange(n)).sum() / mass.sum())

    align = round(com(a, la) - com(b, lb))
    pad_a, pad_b = max(0, -align), max(0, align)
    t_out = max(la + pad_a, lb + pad_b)
    out = torch.zeros(t_out, a.shape[-1])
    out[pad_a:pad_a + la] += a[:la]
    out[pad_b:pad_b + lb] += b[:lb]
    return out, t_out


def test_blend_aligns_centres_of_mass_like_the_reference():
    x, lengths = _counts(b=3, t=15, lengths=[15, 9, 4], seed=3)
    o, o_lengths = _counts(b=3, t=11, lengths=[6, 11, 11], seed=4)
    y, new_lengths = blend(x, lengths, o, o_lengths, torch.ones(3), _gen())
    for i in range(3):
        ref, t_out = _blend_reference(x[i], int(lengths[i]), o[i], int(o_lengths[i]))
        assert int(new_lengths[i]) == t_out
        assert torch.equal(y[i, :t_out], ref)
        assert (y[i, t_out:] == 0).all()


def test_blend_thinning_keeps_half_of_both_in_expectation():
    x, lengths = _counts(b=1, t=30, c=30, lengths=[30])
    x, lengths = x.expand(300, -1, -1).contiguous(), lengths.expand(300).contiguous()
    y, _ = blend(x, lengths, x, lengths, torch.full((300,), 0.5), _gen())
    assert abs(float(y.sum() / (2 * x.sum())) - 0.5) < 0.01


def test_same_class_partners_are_of_the_same_class_and_cover_it():
    pool_labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 0])
    labels = torch.tensor([0] * 400 + [2] * 400)
    idx = same_class_partners(pool_labels, labels, _gen())
    assert torch.equal(pool_labels[idx], labels)
    assert set(idx[:400].tolist()) == {0, 2, 5, 8} and set(idx[400:].tolist()) == {3, 6, 7}


class _Pool:
    def __init__(self, frames, lengths, labels):
        self.frames, self.lengths, self.labels = frames, lengths, labels


def test_class_blend_partner_comes_from_the_pool_of_its_class():
    # class 0 has mass only in channel 0 of the pool, class 1 only in channel 1
    frames = torch.zeros(4, 6, 3, dtype=torch.uint8)
    frames[[0, 2], :, 0] = 4
    frames[[1, 3], :, 1] = 4
    pool = _Pool(frames, torch.full((4,), 6), torch.tensor([0, 1, 0, 1]))
    x = torch.zeros(2, 6, 3)
    x[..., 2] = 1.0  # same centre of mass in time as the pool samples: no realignment
    lengths = torch.full((2,), 6)
    y, new_lengths = ClassBlend(keep=1.0)(x, lengths, torch.tensor([0, 1]), Context(pool=pool),
                                          _gen())
    assert torch.equal(new_lengths, lengths) and torch.equal(y[..., 2], x[..., 2])
    assert (y[0, :, 1] == 0).all() and (y[0, :, 0] == 4).all()
    assert (y[1, :, 0] == 0).all() and (y[1, :, 1] == 4).all()


def test_cochlea_feature_frequencies_match_the_measured_channel_map():
    hz = cochlea_feature_hz(700, 1)  # one unit per feature: REFERENCE §6's measured map
    for unit, measured in ((0, 20000), (120, 8000), (403, 1000), (699, 100)):
        assert abs(math.log(hz[unit] / measured)) < math.log(1.25), (unit, hz[unit])
    assert np.all(np.diff(cochlea_feature_hz(700, 5)) < 0)  # channel 0 is the highest


def test_band_limit_silences_exactly_the_features_outside_the_band():
    hz = torch.as_tensor(cochlea_feature_hz(700, 5), dtype=torch.float32)
    x = torch.ones(2, 3, 140)
    y, _ = BandLimit(high_hz=(3400.0, 3400.0), low_hz=(300.0, 300.0))(
        x, torch.full((2,), 3), torch.zeros(2, dtype=torch.long), Context(feature_hz=hz), _gen())
    keep = (hz <= 3400) & (hz >= 300)
    assert torch.equal(y, x * keep)
    assert 0 < int(keep.sum()) < 140 and not bool(keep[0]) and not bool(keep[-1])


# --------------------------------------------------------------------------------------------
# every transform: invariants, p, seeding


SPECS = [
    {"name": "time_shift", "max_shift": 3},
    {"name": "time_stretch", "max_factor": 1.3},
    {"name": "channel_shift", "max_shift": 2.5},
    {"name": "channel_stretch", "max_factor": 1.2},
    {"name": "event_drop", "rate": [0.1, 0.4]},
    {"name": "class_blend", "keep": 0.5},
    {"name": "band_limit", "high_hz": [1000, 8000], "low_hz": 200},
]


def _train_set(n=16, t=14, c=140, seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, t + 1, (n,), generator=g)
    frames = (torch.randint(0, 4, (n, t, c), generator=g) * valid_mask(lengths, t)).to(torch.uint8)
    return _Pool(frames, lengths, torch.arange(n) % 3)


def test_every_transform_is_covered_here():
    assert {s["name"] for s in SPECS} == set(TRANSFORMS)


@pytest.mark.parametrize("spec", SPECS, ids=[s["name"] for s in SPECS])
def test_each_transform_keeps_counts_labels_and_padding(spec):
    pool = _train_set()
    aug = Augmenter.build([spec], pool, {"n_channels": 700, "channel_group": 5}, seed=0)
    x, lengths, labels = pool.frames.float(), pool.lengths, pool.labels
    y, new_lengths = aug(x, lengths, labels, aug.generator(0, "cpu"))
    assert y.dtype == torch.float32 and y.shape[0] == x.shape[0] and y.shape[2] == x.shape[2]
    assert (y >= 0).all() and torch.equal(y, y.round())
    assert y.shape[1] == int(new_lengths.max())
    assert (y * ~valid_mask(new_lengths, y.shape[1]) == 0).all()
    assert not torch.equal(y[:, : x.shape[1]], x) if y.shape[1] >= x.shape[1] else True
    if spec["name"] not in ("time_stretch", "class_blend"):
        assert torch.equal(new_lengths, lengths)


def test_p_leaves_the_other_samples_untouched():
    pool = _train_set(n=200)
    aug = Augmenter.build([{"name": "event_drop", "rate": 1.0, "p": 0.3}], pool, {}, seed=0)
    x = pool.frames.float()
    y, _ = aug(x, pool.lengths, pool.labels, aug.generator(0, "cpu"))
    dropped = (y.sum((1, 2)) == 0) & (x.sum((1, 2)) > 0)
    same = (y == x).flatten(1).all(1)
    assert bool((dropped | same).all())
    assert 0.2 < float(dropped.float().mean()) < 0.4


def _epoch(aug, pool, epoch, batch=5):
    from spikedelay.data.sets import Batch

    def plain():
        for s in range(0, len(pool.labels), batch):
            idx = torch.arange(s, min(s + batch, len(pool.labels)))
            t = int(pool.lengths[idx].max())
            yield Batch(pool.frames[idx, :t].float(), pool.lengths[idx], pool.labels[idx])

    return list(aug.batches(plain(), epoch))


def test_same_seed_and_epoch_give_the_same_data_in_any_order_of_epochs():
    pool = _train_set()
    aug = Augmenter.build(SPECS, pool, {"n_channels": 700, "channel_group": 5}, seed=7)
    first = _epoch(aug, pool, 3)
    for e in (0, 1, 2):  # a resumed run starts at epoch 3 without epochs 0-2
        _epoch(aug, pool, e)
    again = _epoch(aug, pool, 3)
    fresh = Augmenter.build(SPECS, pool, {"n_channels": 700, "channel_group": 5}, seed=7)
    resumed = _epoch(fresh, pool, 3)
    labels = torch.cat([b.labels for b in first])
    assert torch.equal(labels, pool.labels)  # in the plain batches' order, untouched
    for a, b, c in zip(first, again, resumed, strict=True):
        assert type(a).__name__ == "Batch"
        assert torch.equal(a.x, b.x) and torch.equal(a.x, c.x)
        assert torch.equal(a.lengths, c.lengths) and torch.equal(a.labels, c.labels)
    other_epoch = _epoch(aug, pool, 4)
    other_seed = _epoch(Augmenter.build(SPECS, pool, {"n_channels": 700, "channel_group": 5},
                                        seed=8), pool, 3)
    assert any(a.x.shape != b.x.shape or not torch.equal(a.x, b.x)
               for a, b in zip(first, other_epoch, strict=True))
    assert any(a.x.shape != b.x.shape or not torch.equal(a.x, b.x)
               for a, b in zip(first, other_seed, strict=True))


def test_no_specs_means_no_augmenter():
    assert Augmenter.build([], _train_set(), {}, seed=0) is None


def test_non_count_frames_are_refused():
    pool = _train_set()
    pool.frames = pool.frames.float() + 0.5
    with pytest.raises(ConfigError, match="not spike counts"):
        Augmenter.build([{"name": "time_shift"}], pool, {}, seed=0)


# --------------------------------------------------------------------------------------------
# config


def test_config_parses_and_round_trips_augment_specs(tmp_path: Path):
    cfg = load_config("quick", ["data.augment=[{name: time_shift, max_shift: 20}, "
                                "{name: event_drop, rate: [0.1, 0.2], p: 0.5}]"])
    transforms, problems = parse_specs(cfg.data.augment)
    assert problems == []
    assert transforms[0] == TimeShift(max_shift=20)
    assert transforms[1] == EventDrop(rate=(0.1, 0.2), p=0.5)
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(str(path)).data.augment == cfg.data.augment


def test_config_lists_every_augment_problem_with_the_others():
    raw = {"model": {"dropout": 2.0}, "data": {"augment": [
        {"name": "time_warp"},
        {"name": "event_drop", "rate": [0.5, 0.2]},
        {"name": "time_shift", "max_shift": 2.5, "shift": 1},
        {"name": "band_limit", "high_hz": "high"},
        {"name": "class_blend", "keep": 0.0, "p": 1.5},
    ]}}
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    msg = str(err.value)
    for needle in ("model.dropout", "'time_warp': unknown augmentation", "rate = [0.5, 0.2]",
                   "unknown parameter 'shift'", "high_hz = 'high'", "keep = 0.0", "p = 1.5",
                   "max_shift = 2.5: must be an integer"):
        assert needle in msg, needle
    for not_a_list in ({"name": "time_shift"}, ["time_shift"]):
        with pytest.raises(ConfigError, match="data.augment = .*must be list of mapping"):
            build_config({"data": {"augment": not_a_list}})
    with pytest.raises(ConfigError, match="not counts"):
        build_config({"data": {"dataset": "gsc", "augment": [{"name": "time_shift"}]}})


# --------------------------------------------------------------------------------------------
# the real training path: validation and test never see an augmented batch


def test_training_path_augments_train_batches_only(shd_root: Path, monkeypatch,
                                                   restore_torch_globals):
    import spikedelay.train.evaluation as evaluation
    import spikedelay.train.run as run
    from spikedelay.data.loaders import load_dataset

    cfg = build_config({
        "data": {"dataset": "shd", "root": str(shd_root), "bin_ms": 20.0, "channel_group": 50,
                 "val_fraction": 0.34, "augment": [{"name": "event_drop", "rate": 1.0}]},
        "model": {"in_features": 14, "hidden": [6], "n_classes": 3, "max_delay": 3},
        "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "threads": 1},
    })
    seen: dict[str, list] = {"train": [], "eval": []}
    real_train, real_eval = run.train_epoch, run.evaluate

    def train_spy(model, batches, *args, **kwargs):
        batches = list(batches)
        seen["train"] += batches
        return real_train(model, batches, *args, **kwargs)

    def eval_spy(model, batches, *args, **kwargs):
        batches = list(batches)
        seen["eval"].append(batches)
        return real_eval(model, batches, *args, **kwargs)

    monkeypatch.setattr(run, "train_epoch", train_spy)
    monkeypatch.setattr(run, "evaluate", eval_spy)  # validation passes
    monkeypatch.setattr(evaluation, "evaluate", eval_spy)  # the final test pass
    run.train_run(cfg, shd_root.parent / "run", progress=False, log=lambda _: None)

    splits = load_dataset(cfg.data, seed=cfg.train.seed, protocol="validation", progress=False)
    assert seen["train"] and all(float(b.x.sum()) == 0.0 for b in seen["train"])  # all dropped
    assert float(splits.train.frames.float().sum()) > 0
    # two validation passes, then the one test pass, each exactly the unaugmented split
    assert len(seen["eval"]) == 3
    for batches, fs in zip(seen["eval"], (splits.val, splits.val, splits.test), strict=True):
        got = torch.cat([b.x.flatten(1).sum(1) for b in batches])
        assert torch.equal(got, fs.frames.float().flatten(1).sum(1))
        first = batches[0]
        t = first.x.shape[1]
        assert torch.equal(first.x, fs.frames[: len(first.labels), :t].float())


def test_a_resumed_augmented_run_ends_where_an_uninterrupted_one_does(
        shd_root: Path, restore_torch_globals):
    from spikedelay.checkpoint import load_checkpoint
    from spikedelay.train.run import train_run

    cfg = build_config({
        "data": {"dataset": "shd", "root": str(shd_root), "bin_ms": 20.0, "channel_group": 50,
                 "val_fraction": 0.34, "augment": [
                     {"name": "time_shift", "max_shift": 2, "p": 0.5},
                     {"name": "class_blend", "p": 0.5}, {"name": "event_drop"}]},
        "model": {"in_features": 14, "hidden": [6], "n_classes": 3, "max_delay": 3},
        "train": {"epochs": 3, "batch_size": 8, "device": "cpu", "threads": 1,
                  "deterministic": True},
    })
    quiet = {"progress": False, "log": lambda _: None}
    train_run(cfg, shd_root.parent / "whole", **quiet)
    train_run(cfg, shd_root.parent / "cut", stop_after_epochs=1, **quiet)
    train_run(cfg, shd_root.parent / "cut", **quiet)
    a = load_checkpoint(shd_root.parent / "whole" / "last.safetensors")["model"]
    b = load_checkpoint(shd_root.parent / "cut" / "last.safetensors")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    plain = build_config({**{k: v for k, v in cfg.to_dict().items()},
                          "data": {**cfg.to_dict()["data"], "augment": []}})
    train_run(plain, shd_root.parent / "plain", **quiet)
    c = load_checkpoint(shd_root.parent / "plain" / "last.safetensors")["model"]
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the augmentation did act
