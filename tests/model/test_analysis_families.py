"""Layer characterisation and the Mensa layer families over the zoo."""

import json
import time

import pytest

from mensa.gen.cli import main
from mensa.model import zoo
from mensa.model.analysis import AnalysisError, characterise, fit_families, zoo_families, zoo_features
from mensa.core.builder import NetworkBuilder


def test_characterise_a_conv_by_hand():
    b = NetworkBuilder("t", (1, 8, 8, 4))
    b.conv(b.input, 16, 3)
    (f,) = characterise(b.build())
    macs = 8 * 8 * 16 * 3 * 3 * 4
    param_bytes = 3 * 3 * 4 * 16 + 4 * 16          # int8 weights, int32 biases
    act = 8 * 8 * 4 + 8 * 8 * 16
    assert (f.macs, f.param_bytes, f.act_in_bytes, f.act_out_bytes) == (macs, param_bytes, 8 * 8 * 4, 8 * 8 * 16)
    assert f.intensity == pytest.approx(macs / (param_bytes + act))
    assert f.intensity_no_reuse == pytest.approx(macs / (2 * macs + 8 * 8 * 16))
    assert f.param_reuse == 64 and not f.recurrent


def test_lstm_is_recurrent_and_reuses_weights_once_per_step():
    b = NetworkBuilder("t", (1, 5, 32), kind="lstm")
    b.lstm(b.input, 64, projection=16)
    (f,) = characterise(b.build())
    assert f.recurrent and f.param_reuse == pytest.approx(5)
    assert f.intensity < 5     # batch-1 LSTM: at most T MACs per parameter byte


def test_zoo_families_span_at_least_10x_in_intensity():
    _, families = zoo_families()
    assert len(families) >= 4
    medians = sorted(f.intensity for f in families)
    assert medians[-1] / medians[0] >= 10
    # The recurrent layers form their own family.
    assert any(f.recurrent == 1.0 and set(f.ops) == {"lstm"} for f in families)


def test_families_are_deterministic_for_a_seed():
    feats = zoo_features()
    a = fit_families(feats, k=5, seed=3)
    b = fit_families(feats, k=5, seed=3)
    assert [f.members for f in a] == [f.members for f in b]
    assert a.assign(feats) == b.assign(feats)


def test_assigning_the_zoo_reproduces_the_fit_and_new_models_get_families():
    feats, families = zoo_families()
    assigned = families.assign(feats)
    for fam in families:
        members = {(f.model, f.layer) for f, a in zip(feats, assigned) if a == fam.index}
        assert members == set(fam.members)
    # A model outside the zoo: its big FC joins the low-reuse family with the zoo's FCs, its conv does not.
    b = NetworkBuilder("new", (1, 56, 56, 64))
    x = b.conv(b.input, 128, 3, name="conv")
    b.fc(b.flatten(b.global_avgpool(x)), 4096, name="fc")
    new = characterise(b.build())
    fam = dict(zip([f.layer for f in new], families.assign(new)))
    fc_family = next(f.index for f in families if f.ops.get("fc"))
    assert fam["fc"] == fc_family and fam["conv"] != fc_family and fam["gap0"] is None


def test_bad_family_count_is_a_user_error():
    with pytest.raises(AnalysisError):
        fit_families(zoo_features(), k=1)


def _analyze_in_under_5_s(names, tmp_path, capsys):
    zoo_families()     # the zoo fit is cached once, as it is on a user's machine after the first run
    for name in names:
        out = tmp_path / name
        # CPU time of this process: the machine running the suite is shared, wall time is not ours.
        t = time.process_time()
        assert main(["analyze", name, "--out", str(out)]) == 0
        assert time.process_time() - t < 5, name
        report = json.loads((out / f"{name}.json").read_text())
        assert len(report["layers"]) == len(zoo.get(name).layers)
        for png in (f"{name}_layers.png", "zoo_layers.png"):
            assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()


def test_analyze_cli_writes_json_and_plots_in_under_5_s(tmp_path, capsys):
    _analyze_in_under_5_s(["rnnt"], tmp_path, capsys)


@pytest.mark.slow
def test_analyze_every_zoo_model_in_under_5_s(tmp_path, capsys):
    _analyze_in_under_5_s(zoo.names(), tmp_path, capsys)


def test_analyze_unknown_model_is_one_line_exit_2(capsys, tmp_path):
    assert main(["analyze", "alexnet", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "alexnet" in err and "mobilenet_v2" in err
    assert not (tmp_path / "x").exists()
