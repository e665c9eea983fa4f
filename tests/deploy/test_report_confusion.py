"""The report's confusion matrix equals predictions of the offline model counted by hand. ~5 s."""

from __future__ import annotations

import re

import numpy as np
import torch
from deploy_helpers import randomised_model, save_run

from spikedelay.config import ModelConfig
from spikedelay.data.framing import Framing
from spikedelay.data.hdf5 import read_spike_file, write_spike_file
from spikedelay.deploy.report import write_report
from spikedelay.train.loss import summed_softmax


def _table(text: str, n: int) -> np.ndarray:
    section = text.split("## Confusion matrix", 1)[1]
    rows = [ln for ln in section.splitlines() if re.match(r"\| \d+ ", ln)][:n]
    cells = [[c.strip() for c in ln.strip("|").split("|")][1:1 + n] for ln in rows]
    return np.array([[0 if c == "·" else int(c) for c in row] for row in cells])


def test_report_confusion_matrix_counts_the_offline_predictions(tmp_path, make_spike_set):
    data = tmp_path / "data"
    data.mkdir()
    for name, s in (("shd_train.h5", make_spike_set(12, n_classes=3, seed=0)),
                    ("shd_test.h5", make_spike_set(15, n_classes=3, seed=3, speaker_offset=10))):
        write_spike_file(data / name, s.times, s.units, s.labels, s.speakers, s.keys)
    cfg = ModelConfig(in_features=140, hidden=[24], n_classes=3, max_delay=5, dropout=0.0)
    model = randomised_model(cfg, seed=0)
    with torch.no_grad():
        model.hidden[0].norm.running_var.fill_(0.05)  # the sparse input drives spikes
        model.readout.weight.normal_(0.0, 2.0)  # predictions vary between samples
    run = save_run(tmp_path / "run", model, class_names=["zero", "one", "two"], data_root=data)
    samples = 12
    text = write_report(run, samples=samples).read_text()

    rec = read_spike_file(data / "shd_test.h5")
    framing, counts = Framing(), np.zeros((3, 3), dtype=int)
    model = model.double().eval()
    for i in range(samples):  # one sample at a time: no padding anywhere
        x = torch.from_numpy(framing(rec.times[i], rec.units[i]))[None].double()
        with torch.no_grad():
            v_out, out_len = model(x, torch.tensor([x.shape[1]]))
        pred = int(summed_softmax(v_out, out_len).argmax(-1))
        counts[int(rec.labels[i]), pred] += 1
    assert len(set(counts.nonzero()[1])) >= 2, "the test needs more than one predicted class"
    np.testing.assert_array_equal(_table(text, 3), counts)
    assert "| 0 zero |" in text
