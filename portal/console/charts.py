"""Charts as plain SVG drawn on the server: no script, no CDN, nothing for the page's
content-security policy to allow. Colours come from the stylesheet (one class per
category), so they follow the console's look; every chart has a table of its numbers
next to it for screen readers and for copying."""

from __future__ import annotations

from dataclasses import dataclass

from keydir.mail_statistics import CATEGORIES, DayVolume

WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 40, 24, 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    category: str
    title: str  # the tooltip: day, category, count


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[Label]
    empty: bool


def _nice_step(value: float) -> int:
    """A round tick step (1, 2 or 5 times a power of ten) at or above ``value``."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def stacked_bars(days: list[DayVolume]) -> BarChart:
    """One bar per day, stacked by category in ``CATEGORIES`` order."""
    highest = max((d.total for d in days), default=0)
    step = _nice_step(max(highest, 1) / 4)  # at most five lines: 0 and four steps
    top = step * -(-max(highest, 1) // step)
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bars: list[Bar] = []
    labels: list[Label] = []
    for index, day in enumerate(days):
        x = LEFT + index * slot + slot * 0.15
        base = HEIGHT - BOTTOM
        for category in CATEGORIES:
            count = day.counts[category]
            if not count:
                continue
            height = plot_height * count / top
            base -= height
            bars.append(Bar(round(x, 1), round(base, 1), round(slot * 0.7, 1),
                            round(height, 1), category,
                            f"{day.day.isoformat()} · {category}: {count}"))
        # Every day labelled would crowd a month: every seventh, and the last unless it
        # would touch the one before.
        last = index == len(days) - 1
        if index % 7 == 0 or (last and index % 7 >= 3):
            labels.append(Label(round(x + slot * 0.35, 1), day.day.strftime("%d.%m.")))
    ticks = [Tick(round(HEIGHT - BOTTOM - plot_height * value / top, 1), str(value))
             for value in range(0, top + 1, step)]
    return BarChart(WIDTH, HEIGHT, bars, ticks, labels, highest == 0)


@dataclass(frozen=True)
class Share:
    category: str
    count: int
    percent: float
    x: float  # where its segment starts, in percent of the width
    width: float


def shares(days: list[DayVolume]) -> list[Share]:
    """Each category's part of the whole period, for a 100 % bar."""
    totals = {c: sum(d.counts[c] for d in days) for c in CATEGORIES}
    whole = sum(totals.values())
    result, start = [], 0.0
    for category in CATEGORIES:
        percent = 100.0 * totals[category] / whole if whole else 0.0
        result.append(Share(category, totals[category], round(percent, 1), round(start, 3),
                            round(percent, 3)))
        start += percent
    return result
