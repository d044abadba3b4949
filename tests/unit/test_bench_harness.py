"""readroom-bench's harness: medians, ratios and the JSON fields the issue names."""
import json
import sys
import types

import bench.cli
from bench import harness


def test_result_ratios_and_json_fields():
    r = harness.Result("x", ours_s=2.0, comparison="lib", comparison_s=4.0, floor="curl", floor_s=1.0)
    data = r.as_json()
    assert {"name", "ours_s", "comparison", "comparison_s", "ratio", "floor", "floor_s", "floor_ratio"} <= set(data)
    assert data["ratio"] == 0.5 and data["floor_ratio"] == 2.0
    assert harness.Result("y", 1.0, "none", None).ratio is None


def test_median_time_runs_setup_untimed_and_takes_the_median():
    calls = []
    t = harness.median_time(lambda: calls.append("run"), repeat=3, setup=lambda: calls.append("setup"))
    assert calls == ["setup", "run"] * 3 and t >= 0


def test_cli_runs_a_scenario_and_writes_json(tmp_path, monkeypatch, capsys):
    fake = types.ModuleType("bench.scenarios.fake")
    fake.NAME = "fake"
    fake.run = lambda ctx: [harness.Result("fake", 1.0, "other", 3.0)]
    monkeypatch.setitem(sys.modules, "bench.scenarios.fake", fake)
    monkeypatch.setattr(bench.cli, "scenario_names", lambda: ["fake"])
    out = tmp_path / "r.json"
    assert bench.cli.main(["fake", "--json", str(out), "--repeat", "1"]) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["name"] == "fake" and abs(rows[0]["ratio"] - 1 / 3) < 1e-9
    assert "fake" in capsys.readouterr().out


def test_every_scenario_module_has_name_and_run():
    names = harness.scenario_names()
    assert {"worklist", "fetch", "render", "sign", "dictation"} <= set(names)
    for name in names:
        mod = harness.load_scenario(name)
        assert callable(mod.run) and mod.NAME
