"""The cocotb testbench frame's plain helpers (mensa.sim.testbench): parameters, pauses, the bit-exact check."""

import json
import random

import numpy as np
import pytest

from mensa.sim.testbench import assert_bit_exact, pause_generator, read_params


def test_parameters_come_from_mensa_tb(monkeypatch):
    monkeypatch.setenv("MENSA_TB", json.dumps({"gap": 0.3, "layers": [[1, 2, 3]]}))
    assert read_params() == {"gap": 0.3, "layers": [[1, 2, 3]]}
    monkeypatch.delenv("MENSA_TB")
    assert read_params() == {}


def test_pauses_are_drawn_from_the_generator_given():
    a, b = pause_generator(0.3, random.Random(5)), pause_generator(0.3, random.Random(5))
    drawn = [next(a) for _ in range(1000)]
    assert drawn == [next(b) for _ in range(1000)]
    assert 200 < sum(drawn) < 400
    assert not any(next(pause_generator(0.0, random.Random(1))) for _ in range(100))


def test_bit_exact_check_names_the_count_and_the_first_difference():
    expect = np.arange(12, dtype=np.int8).reshape(3, 4)
    assert_bit_exact(expect.copy(), expect, "layer")
    got = expect.copy()
    got[1, 2] = 100
    got[2, 0] = -1
    with pytest.raises(AssertionError, match=r"layer: 2 of 12 outputs differ from golden, first at "
                                             r"\(step, unit\) \(1, 2\): got 100, expected 6; row 1: "
                                             r"got \[4, 5, 100, 7\], expected \[4, 5, 6, 7\]"):
        assert_bit_exact(got, expect, "layer", axes="(step, unit)", row=True)
