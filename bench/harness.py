"""The benchmark harness: scenario registry, repeated timing, results table and JSON.

Owns how things are measured. A scenario is a module ``bench/scenarios/<name>.py`` with ``NAME`` and
``run(ctx: Context) -> list[Result]``. Each Result compares our code with a comparison (what a Python user
would write with the field's library) and optionally a floor (the least work possible, e.g. curl), all
measured in the same process run, as medians of repeated runs. Ratios, not absolute times, are what we track.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench.scenarios


@dataclasses.dataclass
class Result:
    name: str
    ours_s: float
    comparison: str
    comparison_s: float | None
    floor: str | None = None
    floor_s: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.ours_s / self.comparison_s if self.comparison_s else None

    @property
    def floor_ratio(self) -> float | None:
        return self.ours_s / self.floor_s if self.floor_s else None

    def as_json(self) -> dict:
        return {"name": self.name, "ours_s": self.ours_s, "comparison": self.comparison,
                "comparison_s": self.comparison_s, "ratio": self.ratio, "floor": self.floor,
                "floor_s": self.floor_s, "floor_ratio": self.floor_ratio, "note": self.note}


def median_time(fn: Callable[[], object], repeat: int = 5, setup: Callable[[], object] | None = None) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs; ``setup`` runs untimed before each."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Context:
    """What scenarios share: a work directory, the repeat count, and one reference cloud started on demand."""

    def __init__(self, workdir: Path | None = None, repeat: int = 5) -> None:
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="readroom-bench-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.repeat = repeat
        self._cloud = None

    def cloud(self, seed_demo: bool = False):
        """The reference cloud (nginx + Orthanc + worklist service) on loopback, started once per run."""
        if self._cloud is None:
            from cloud.launcher import CloudProcess

            self._cloud = CloudProcess(self.workdir / "cloud", seed_demo=seed_demo)
            self._cloud.start()
        return self._cloud

    def close(self) -> None:
        if self._cloud is not None:
            self._cloud.stop()
            self._cloud = None
        if self._tmp is not None:
            self._tmp.cleanup()


def scenario_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.scenarios.__path__))


def load_scenario(name: str):
    return importlib.import_module(f"bench.scenarios.{name}")


def format_table(results: list[Result]) -> str:
    def f(x, fmt="{:.4f}"):
        return "-" if x is None else fmt.format(x)

    rows = [("scenario", "ours s", "comparison", "comp s", "ratio", "floor", "floor s", "floor ratio")]
    for r in results:
        rows.append((r.name, f(r.ours_s), r.comparison, f(r.comparison_s), f(r.ratio, "{:.2f}x"),
                     r.floor or "-", f(r.floor_s), f(r.floor_ratio, "{:.2f}x")))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)
