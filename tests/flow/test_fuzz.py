"""Hostile input: every mistake is one line, exit 2 and nothing written; never a traceback, never a hang.

Property-based (hypothesis): command lines drawn from every subcommand's flags with hostile
values (paths that are files, folders, FIFOs, symbolic-link loops, devices, too long; numbers
out of range; names that are not names), configs mutated field by field, layer specs and ONNX
graphs with wrong attributes. ``make test`` draws a few dozen examples per property;
``make test-all`` (the ``slow`` marker) draws hundreds.

The work a valid command line starts (elaboration, simulation, synthesis) is replaced by a
sentinel: the property is about what happens before the work, and every check must come first.
"""

import contextlib
import io
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mensa.core.config import ConfigError, loads, presets
from mensa.core.errors import UserError
from mensa.gen import cmd_analyze, cmd_build, cmd_compare, cmd_run_layer, cmd_synth, cmd_verilog
from mensa.gen.cli import main

REPO = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = 60


def _profile(examples):
    return settings(max_examples=examples, deadline=None, derandomize=False, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


FAST, DEEP = _profile(25), _profile(400)


class _WouldRun(Exception):
    """Raised in place of the long work a valid command line would start."""


@pytest.fixture(autouse=True)
def _no_long_work(monkeypatch):
    def would_run(*args, **kwargs):
        raise _WouldRun
    monkeypatch.setattr(cmd_verilog, "emit", would_run)
    monkeypatch.setattr(cmd_synth, "synth", would_run)
    monkeypatch.setattr(cmd_build, "build", would_run)
    monkeypatch.setattr(cmd_run_layer, "simulate", would_run)
    monkeypatch.setattr(cmd_analyze.analysis, "zoo_families", would_run)
    monkeypatch.setattr(cmd_compare, "explore", would_run)      # the searched baselines


@contextlib.contextmanager
def _time_limit(seconds):
    def expired(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _workspace(root):
    """A folder with the hostile things a path can be."""
    (root / "file.txt").write_text("not a config\n")
    (root / "dir").mkdir()
    (root / "bad.toml").write_text("name = [\n")
    (root / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (root / "names.toml").write_text('name = "9lives"\n[[accelerator]]\nname = "x"\n')
    (root / "empty.onnx").write_bytes(b"")
    (root / "junk.onnx").write_bytes(bytes(range(256)) * 4)
    os.mkfifo(root / "fifo")
    os.symlink(root / "loop", root / "loop")
    return root


def _snapshot(root):
    return {p.relative_to(root): (p.is_dir() or p.is_fifo() or p.is_symlink() or p.read_bytes())
            for p in sorted(root.rglob("*"))}


def _call(argv):
    """Run ``mensa argv`` in a fresh workspace: (exit status, stderr). Checks the one-line contract."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _workspace(Path(tmp))
        before = _snapshot(root)
        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(root)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _time_limit(TIME_LIMIT_S):
                try:
                    code = main(argv)
                except _WouldRun:
                    code = 0
        finally:
            os.chdir(cwd)
        text = err.getvalue()
        assert code in (0, 2), f"mensa {argv}: exit {code}\n{text}"
        if code == 2:
            lines = text.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in text, f"mensa {argv}:\n{text}"
            assert _snapshot(root) == before, f"mensa {argv}: exit 2 but wrote files"
        return code, text


PATHS = ["", ".", "/", "dir", "file.txt", "file.txt/below", "fifo", "loop", "/dev/null", "/dev/zero",
         "/proc/version", "x" * 300, "a/" * 1100 + "b", "new", "new/deeper", "bad.toml", "deep.toml", "names.toml",
         "empty.onnx", "junk.onnx", "missing.onnx", "\u0663\u0663", "-", "--"]
NUMBERS = ["-1", "0", "1", "3", "255", "65536", "4294967295", "4294967296", str(2**40), "1e300", "nan", "inf",
           "-0", "0.5", "abc", "", "\u0663"]
CONFIGS = [*presets(), "nosuch", *PATHS]
MODELS = ["ds_cnn", "mobilenet_v2", "rnnt", "nope", "", *PATHS]
LAYERS = ["fc:in=64,out=32", "conv2d:in=8x8x8,out=8,kernel=3,padding=same", "depthwise:in=8x8x16,kernel=3",
          "pointwise:in=4x4x8,out=8,act=relu6", "conv2d:in=100000x100000x100000,out=8,kernel=3",
          "fc:in=65535,out=65535", "conv2d:in=8x8x4,out=4,kernel=0", "conv2d:in=8x8x4,out=4,stride=0",
          "conv2d:in=8x8x4,out=4,padding=-1", "conv2d:in=1x1x1,out=1,kernel=300", "ds_cnn:0", "mobilenet_v2:999",
          "fc", "fc:", "x:y", "", ":", "fc:in=1e3,out=2", "fc:in=٣,out=2"]


def _flag(name, values):
    return st.tuples(st.just(name), st.sampled_from(values)).map(list)


def _command(name, *flags, positional=None):
    head = st.just([name]) if positional is None else st.sampled_from(positional).map(lambda p: [name, p])
    return st.tuples(head, st.lists(st.one_of(*flags), max_size=4)).map(
        lambda t: t[0] + [v for pair in t[1] for v in pair])


COMMANDS = st.one_of(
    _command("verilog", _flag("--config", CONFIGS), _flag("--out", PATHS), _flag("--unit", ["array", "bogus", ""])),
    _command("models", st.just(["--json"]), _flag("--bogus", ["1"])),
    _command("analyze", _flag("--out", PATHS), _flag("--families", NUMBERS), _flag("--seed", NUMBERS),
             positional=MODELS),
    _command("schedule", _flag("--system", CONFIGS), _flag("--json", PATHS),
             _flag("--objective", ["latency", "energy", "speed", ""]), positional=MODELS),
    _command("synth", _flag("--config", CONFIGS), _flag("--target", ["ecp5-85f", "ice40-up5k", "xc7", ""]),
             _flag("--out", PATHS), _flag("--unit", ["array", "accelerator", "x"]),
             _flag("--accelerator", ["pascal", "nope", ""])),
    _command("build", _flag("--config", CONFIGS), _flag("--board", ["ulx3s-85f", "nope", ""]),
             _flag("--out", PATHS), _flag("--seed", NUMBERS)),
    _command("run-layer", _flag("--config", CONFIGS), _flag("--layer", LAYERS), _flag("--seed", NUMBERS),
             _flag("--latency", [*NUMBERS, "3-1", "1-5"]), _flag("--pause", NUMBERS), _flag("--json", PATHS),
             _flag("--sim", ["verilator", "icarus", "x"]), _flag("--accelerator", ["pascal", "nope"])),
    _command("compare", _flag("--models", ["ds_cnn", "", ",", "nope", "ds_cnn,ds_cnn"]),
             _flag("--area-mm2", [*NUMBERS, "system", "native"]), _flag("--out", PATHS),
             _flag("--baseline", CONFIGS[:12]), _flag("--system", CONFIGS[:12]), st.just(["--no-plots"])),
    st.lists(st.sampled_from(["--version", "-h", "bogus", "", "--", "verilog"]), max_size=2),
)


def _check_commands(argv):
    _call(argv)


@FAST
@given(COMMANDS)
def test_a_hostile_command_line_is_answered_in_one_line_or_accepted(argv):
    _check_commands(argv)


@pytest.mark.slow
@DEEP
@given(COMMANDS)
def test_many_hostile_command_lines_are_answered_in_one_line_or_accepted(argv):
    _check_commands(argv)


# -- configs, mutated field by field ---------------------------------------------------------

VALUES = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=300), st.booleans(), st.lists(st.integers(), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _toml_value(v):
    import json
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {x}" for k, x in v.items()) + " }"
    return json.dumps(v)


PRESET_TEXT = {name: (REPO / "configs" / f"{name}.toml").read_text() for name in presets()}


@st.composite
def mutated_configs(draw):
    text = PRESET_TEXT[draw(st.sampled_from(sorted(PRESET_TEXT)))]
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        assignments = [i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
        i = draw(st.sampled_from(assignments))
        key = lines[i].split("=", 1)[0].strip()
        lines[i] = f"{key} = {_toml_value(draw(VALUES))}"
    return "\n".join(lines) + "\n"


def _check_config(text):
    from mensa.contract.compiler import compile_layer  # noqa: F401  (the config's consumers load)
    from mensa.contract.gemm import GemmGeometry
    from mensa.contract.header import header
    from mensa.contract.nearmem import NearMemGeometry
    from mensa.contract.regs import register_map
    from mensa.core.config import CoreKind
    try:
        system = loads(text)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    for acc in system.accelerator:
        try:
            if acc.kind is CoreKind.NEARMEM:
                NearMemGeometry.of(acc.nearmem)
            else:
                GemmGeometry.of(acc)
                header(register_map(acc), prefix=f"{system.name}_{acc.name}".replace("-", "_"))
        except UserError as e:
            assert "\n" not in str(e)


@FAST
@given(mutated_configs())
def test_a_mutated_config_loads_or_is_refused_in_one_line(text):
    _check_config(text)


@pytest.mark.slow
@DEEP
@given(mutated_configs())
def test_many_mutated_configs_load_or_are_refused_in_one_line(text):
    _check_config(text)


# -- ONNX graphs with wrong attributes ---------------------------------------------------------

def _conv_model(cin, cout, k, w_k, w_cin, strides, pads, opset, dims):
    import onnx
    from onnx import TensorProto, helper
    w = helper.make_tensor("w", TensorProto.FLOAT, [cout, w_cin, w_k, w_k],
                           np.random.default_rng(0).normal(size=cout * w_cin * w_k * w_k).tolist())
    attrs = {"kernel_shape": [k, k], "strides": strides, "pads": pads}
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims(cin))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString(), onnx


ONNX_CASES = st.tuples(
    st.sampled_from([3, 8]), st.sampled_from([4, 8]), st.sampled_from([1, 3, 5]), st.sampled_from([1, 3, 5]),
    st.sampled_from([3, 8, 2]), st.sampled_from([[1, 1], [2, 2], [0, 1], [1], [-1, 1]]),
    st.sampled_from([[0, 0, 0, 0], [1, 1, 1, 1], [1, 1], [-1, 0, 0, 0]]), st.sampled_from([13, 17, 999, 0]),
    st.sampled_from(["static", "batch", "hw"]))


def _check_onnx(case):
    from mensa.model.onnx_import import import_onnx
    cin, cout, k, w_k, w_cin, strides, pads, opset, symbolic = case
    dims = {"static": lambda c: [1, c, 8, 8], "batch": lambda c: ["N", c, 8, 8],
            "hw": lambda c: [1, c, "H", "W"]}[symbolic]
    data, _ = _conv_model(cin, cout, k, w_k, w_cin, strides, pads, opset, dims)
    wrong = (k != w_k or w_cin != cin or min(strides) < 1 or len(strides) != 2 or len(pads) != 4
             or min(pads) < 0 or opset in (0, 999) or symbolic == "hw")
    try:
        with _time_limit(TIME_LIMIT_S):
            net = import_onnx(data, name="fuzz").network
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert not wrong, f"accepted a wrong model: {case}"
    assert net.layers


@FAST
@given(ONNX_CASES)
def test_an_onnx_conv_with_wrong_numbers_is_refused_in_one_line(case):
    _check_onnx(case)


@pytest.mark.slow
@DEEP
@given(ONNX_CASES)
def test_many_onnx_convs_with_wrong_numbers_are_refused_in_one_line(case):
    _check_onnx(case)
