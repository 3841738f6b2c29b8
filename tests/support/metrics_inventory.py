"""deploy/METRICS.md as data, and Prometheus text exposition parsed by metric family."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Entry:
    name: str
    type: str
    labels: tuple[str, ...]
    process: str
    status: str

    @property
    def single_process_only(self) -> bool:
        return "single-process mode only" in self.process


@dataclass
class Inventory:
    entries: dict[str, Entry]

    def get(self, name: str) -> Entry | None:
        return self.entries.get(name)

    def resolve(self, series_name: str) -> str | None:
        """The inventoried metric a series name belongs to (histogram suffixes included)."""
        if series_name in self.entries:
            return series_name
        for suffix in SUFFIXES:
            base = series_name[: -len(suffix)]
            if series_name.endswith(suffix) and self.entries.get(base) and self.entries[base].type == "histogram":
                return base
        return None


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def load_inventory(path: str) -> Inventory:
    entries: dict[str, Entry] = {}
    with open(path) as fh:
        for line in fh:
            if not line.startswith("| `"):
                continue
            cells = _cells(line)
            if len(cells) != 6:
                continue
            name = cells[0].strip("`")
            kind = cells[1].split()[0]
            labels = tuple(re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", cells[2])))
            assert name not in entries, f"{name} listed twice in METRICS.md"
            assert kind in {"counter", "gauge", "histogram", "summary"}, (name, kind)
            assert cells[5] in {"exported", "defined", "target"}, (name, cells[5])
            entries[name] = Entry(name, kind, labels, cells[3], cells[5])
    assert entries, "no metric rows parsed from METRICS.md"
    return Inventory(entries)


@dataclass
class Family:
    type: str
    labels: set[str] = field(default_factory=set)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s")


def parse_exposition(text: str) -> dict[str, Family]:
    """Metric families of a /metrics answer with the label names their samples carry (le excluded)."""
    families: dict[str, Family] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = Family(kind.strip())
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        series = match.group(1)
        family = next((f for f in (series, *(series[: -len(s)] for s in SUFFIXES if series.endswith(s)))
                       if f in families), None)
        if family is None:
            continue
        labels = {pair.split("=", 1)[0] for pair in re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', match.group(3) or "")}
        families[family].labels |= labels - {"le"}
    # prometheus_client names counter families without _total in TYPE lines; index both ways.
    for name, family in list(families.items()):
        if family.type == "counter" and not name.endswith("_total"):
            families.setdefault(name + "_total", family)
            del families[name]
    return families
