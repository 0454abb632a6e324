"""Prometheus metrics: counters, gauges and histograms with labels, rendered in the text exposition format.

Our own small registry rather than prometheus_client: an increment here is a dict update with no lock
(the gateway is one event loop per process), which matters when every request touches a dozen series.

Each metric keeps at most `max_series` label sets (`metrics.max_series`); the values of any label set beyond
that are added to one series whose every label is `other`, so that label values chosen by clients cannot grow
the process's memory and the scrape without bound. The cap is checked only when a label set is new.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from typing import TypeVar

LabelValues = tuple[str, ...]
M = TypeVar("M", bound="Metric")

_INF = 'le="+Inf"'
MAX_SERIES = 10_000
OTHER = "other"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self.max_series = MAX_SERIES  # the registry sets its own
        self.other: LabelValues = (OTHER,) * len(self.label_names)  # where label sets beyond the cap go

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(f"{line}\n" for line in self.samples())


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.values: dict[LabelValues, float] = {}

    def inc(self, labels: LabelValues = (), amount: float = 1.0) -> None:
        _add(self.values, labels, amount, self.max_series, self.other)

    def get(self, labels: LabelValues = ()) -> float:
        return self.values.get(labels, 0.0)

    def samples(self) -> Iterable[str]:
        # Exposition names counters without the _total suffix in TYPE lines only for OpenMetrics; the
        # classic text format keeps the full name, which is what scrapers and our users' queries expect.
        for labels, value in self.values.items():
            yield f"{self.name}{_labels(self.label_names, labels)} {_num(value)}"


def _add(values: dict[LabelValues, float], labels: LabelValues, amount: float, cap: int,
         other: LabelValues) -> None:
    """Add `amount` to a series; a new label set beyond `cap` is added to the `other` series instead."""
    value = values.get(labels)
    if value is None:  # a new label set: the only time the cap is looked at
        if len(values) >= cap:
            labels = other
            value = values.get(labels, 0.0)
        else:
            value = 0.0
    values[labels] = value + amount


class Gauge(Metric):
    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Iterable[str] = (),
                 read: Callable[[], float] | None = None) -> None:
        super().__init__(name, help, labels)
        self.values: dict[LabelValues, float] = {}
        self._read = read

    def read_from(self, read: Callable[[], float]) -> None:
        """Take the value from `read` at scrape time (e.g. a queue length owned by another part)."""
        self._read = read

    def set(self, value: float, labels: LabelValues = ()) -> None:
        values = self.values
        if len(values) >= self.max_series and labels not in values:
            labels = self.other  # the folded series holds the last value set beyond the cap
        values[labels] = value

    def add(self, amount: float, labels: LabelValues = ()) -> None:
        _add(self.values, labels, amount, self.max_series, self.other)

    def get(self, labels: LabelValues = ()) -> float:
        if self._read is not None:
            return self._read()
        return self.values.get(labels, 0.0)

    def samples(self) -> Iterable[str]:
        if self._read is not None:
            yield f"{self.name} {_num(self._read())}"
            return
        for labels, value in self.values.items():
            yield f"{self.name}{_labels(self.label_names, labels)} {_num(value)}"


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Iterable[str] = (),
                 buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help, labels)
        self.bounds = tuple(sorted(buckets))
        self.series: dict[LabelValues, list[float]] = {}  # bucket counts..., sum, count

    def observe(self, value: float, labels: LabelValues = ()) -> None:
        series = self.series
        row = series.get(labels)
        if row is None:
            if len(series) >= self.max_series:
                labels = self.other
                row = series.get(labels)
            if row is None:
                row = series[labels] = [0.0] * (len(self.bounds) + 2)
        slot = bisect.bisect_left(self.bounds, value)
        if slot < len(self.bounds):
            row[slot] += 1
        row[-2] += value
        row[-1] += 1

    def count(self, labels: LabelValues = ()) -> float:
        row = self.series.get(labels)
        return row[-1] if row else 0.0

    def samples(self) -> Iterable[str]:
        names = self.label_names
        for labels, row in self.series.items():
            running = 0.0
            for bound, n in zip(self.bounds, row, strict=False):
                running += n
                le = f'le="{_num(bound)}"'
                yield f"{self.name}_bucket{_labels(names, labels, le)} {_num(running)}"
            yield f"{self.name}_bucket{_labels(names, labels, _INF)} {_num(row[-1])}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_num(row[-2])}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {_num(row[-1])}"


class Registry:
    """All metrics of one gateway process, in registration order."""

    def __init__(self, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series  # per metric; label sets beyond it are folded into one `other` series
        self.metrics: dict[str, Metric] = {}
        self.before_render: list[Callable[[], None]] = []  # e.g. record what settled requests left to record

    def add(self, metric: M) -> M:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        metric.max_series = self.max_series
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        return self.add(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Iterable[str] = (),
              read: Callable[[], float] | None = None) -> Gauge:
        return self.add(Gauge(name, help, labels, read))

    def histogram(self, name: str, help: str, labels: Iterable[str] = (),
                  buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> Histogram:
        return self.add(Histogram(name, help, labels, buckets))

    def render(self) -> bytes:
        for hook in self.before_render:
            hook()
        return "".join(m.render() for m in self.metrics.values()).encode()


def merge(expositions: Iterable[bytes]) -> bytes:
    """Several processes' expositions of the same metrics as one: every series' values added up.

    Counters, histogram buckets, sums and counts add up across processes, and so do the gateway's two gauges
    (requests in flight, ledger backlog). A series only some processes have is kept; every family stays one
    block under its HELP and TYPE lines, in the order first seen.
    """
    families: dict[str, tuple[list[str], dict[str, float]]] = {}  # name -> (HELP/TYPE lines, series -> value)
    current: dict[str, float] | None = None
    for text in expositions:
        for line in text.decode().splitlines():
            if line.startswith("# HELP "):
                name = line.split(" ", 3)[2]
                family = families.get(name)
                if family is None:
                    family = families[name] = ([line], {})
                current = family[1]
            elif line.startswith("# TYPE "):
                name = line.split(" ", 3)[2]
                family = families.setdefault(name, ([], {}))
                if line not in family[0]:
                    family[0].append(line)
                current = family[1]
            elif line and not line.startswith("#") and current is not None:
                series, _, value = line.rpartition(" ")
                current[series] = current.get(series, 0.0) + float(value)
    out: list[str] = []
    for comments, values in families.values():
        out.extend(comments)
        out.extend(f"{key} {_num(value)}" for key, value in values.items())
    return ("\n".join(out) + "\n").encode() if out else b""
