"""The simulator's report: goal lines computed from the figures, a terminal table, the JSON
file and an HTML page with inline SVG plots drawn here (no plotting dependency).

Goals are PASS/FAIL/N/A lines computed from what a run measured, never asserted anywhere:
a FAIL carries its figure, so the page says how far off a goal is.
"""

from __future__ import annotations

import html
import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from core.simulate import RunFigures, percentile


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    verdict: str  # PASS, FAIL, N/A
    figure: str


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def goals(run: RunFigures) -> list[Goal]:
    found: list[Goal] = []
    label = f"[{run.mode}/{run.faults}]"
    if run.mode == "strict":
        found.append(Goal(f"{label} 0 oversold units in strict mode",
                          "PASS" if run.oversold_units == 0 else "FAIL",
                          f"{run.oversold_units} units in {run.oversold_orders} orders"))
    else:
        found.append(Goal(f"{label} shared mode oversells only inside the propagation window",
                          "PASS" if run.oversold_outside_window == 0 else "FAIL",
                          f"{run.oversold_units} units oversold, "
                          f"{run.oversold_outside_window} outside the window"))
    if run.round_trip_ms and run.publish_wall_p99 is not None:
        limit = 2 * run.round_trip_ms
        big = run.shops >= 20 and run.skus >= 5000
        found.append(Goal(
            f"{label} stock propagation p99 ≤ 2 sandbox round trips"
            + ("" if big else f" (goal is set at 20 shops × 5000 SKUs; this run: "
                              f"{run.shops} × {run.skus})"),
            ("PASS" if run.publish_wall_p99 <= limit else "FAIL") if big else "N/A",
            f"p99 {_fmt(run.publish_wall_p99, ' ms')} wall vs 2 × {_fmt(run.round_trip_ms, ' ms', 2)}"
            f" = {_fmt(limit, ' ms')}; simulated p99 {_fmt(run.publish_sim_p99, ' s')}"))
    expected = sum(run.alerts_expected.values())
    raised = sum(run.alerts_raised_expected.values())
    spurious = sum(run.alerts_spurious.values())
    found.append(Goal(f"{label} every expected tracking alert raised, none spurious",
                      ("PASS" if raised == expected and spurious == 0 else "FAIL")
                      if run.shipments else "N/A",
                      f"{raised}/{expected} raised, {spurious} spurious, "
                      f"{sum(run.alerts_borderline.values())} borderline (not judged)"))
    found.append(Goal(f"{label} every tracking number pushed",
                      ("PASS" if run.tracking_not_pushed == 0 else "FAIL")
                      if run.shipments else "N/A",
                      f"{run.tracking_pushed}/{run.shipments} pushed, "
                      f"{run.tracking_pushed_within_sla} within the 2 h SLA"))
    found.append(Goal(f"{label} the stock ledger matches every level",
                      "PASS" if run.ledger_problems == 0 else "FAIL",
                      f"{run.ledger_problems} levels disagree"))
    return found


def rows(run: RunFigures) -> list[tuple[str, str]]:
    per_change = run.stock_calls / run.stock_changes if run.stock_changes else None
    tracking_sla = (f"{run.tracking_pushed_within_sla}/{run.shipments}"
                    if run.shipments else "—")
    return [
        ("run", f"{run.mode}, faults {run.faults}, seed {run.seed}, {run.database}"),
        ("scenario", f"{run.shops} shops ({len(run.platforms)} platforms), {run.skus} SKUs, "
                     f"{run.planned_orders} carts, {run.simulated_hours:g} h simulated, "
                     f"tick {run.tick_seconds:g} s"),
        ("orders placed / refused sold out", f"{run.orders_placed} / "
                                             f"{run.orders_refused_sold_out}"),
        ("orders ingested", str(run.orders_ingested)),
        ("cancellations / refunds after shipping", f"{run.cancellations} / "
                                                   f"{run.refunds_after_shipping}"),
        ("pushes delivered (incl. duplicates)", str(run.pushes_delivered)),
        ("oversold units (orders)", f"{run.oversold_units} ({run.oversold_orders})"),
        ("  outside the propagation window", str(run.oversold_outside_window)),
        ("stock changes (unpublished at end)", f"{run.stock_changes} "
                                               f"({run.stock_changes_unpublished})"),
        ("stock → all channels, simulated p50/p99 (order hours)",
         f"{_fmt(run.publish_sim_p50, ' s')} / {_fmt(run.publish_sim_p99, ' s')}"),
        ("stock → all channels, wall p50/p99",
         f"{_fmt(run.publish_wall_p50, ' ms')} / {_fmt(run.publish_wall_p99, ' ms')}"),
        ("one sandbox round trip (median)", _fmt(run.round_trip_ms, " ms", 2)),
        ("arrival → reserved, simulated p50/p99",
         f"{_fmt(run.reserve_sim_p50, ' s')} / {_fmt(run.reserve_sim_p99, ' s')}"),
        ("arrival → reserved, wall p50/p99",
         f"{_fmt(run.reserve_wall_p50, ' ms', 0)} / {_fmt(run.reserve_wall_p99, ' ms', 0)}"),
        ("stock API calls per stock change", _fmt(per_change, "", 2)),
        ("API calls in the day (all kinds)", str(run.api_calls)),
        ("shipments / tracking pushed within 2 h", f"{run.shipments} / {tracking_sla}"),
        ("tracking alerts raised/expected",
         ", ".join(f"{k} {run.alerts_raised_expected.get(k, 0)}/{run.alerts_expected.get(k, 0)}"
                   for k in run.alerts_expected)),
        ("tracking alerts spurious / borderline",
         f"{sum(run.alerts_spurious.values())} / {sum(run.alerts_borderline.values())}"),
        ("alerts by kind", ", ".join(f"{k} {v}" for k, v in run.alerts_by_kind.items()) or "—"),
        ("job failures (retried next run)",
         ", ".join(f"{k} {v}" for k, v in run.job_failures.items()) or "—"),
        ("wall / CPU time", f"{run.wall_seconds:.1f} s / {run.cpu_seconds:.1f} s "
                            f"(set-up {run.setup_seconds:.1f} s)"),
        ("peak RSS (process)", _fmt(run.peak_rss_mb, " MB")),
    ]


def table(results: Sequence[RunFigures]) -> str:
    lines: list[str] = []
    for run in results:
        width = max(len(k) for k, _ in rows(run))
        lines.append("")
        for key, value in rows(run):
            lines.append(f"{key:<{width}}  {value}")
    lines.append("")
    lines += [f"{g.verdict:<4}  {g.name}: {g.figure}" for run in results for g in goals(run)]
    return "\n".join(lines)


def machine() -> dict[str, str]:
    import os

    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": str(os.cpu_count()), "memory": memory}


def write_json(results: Sequence[RunFigures], path: Path) -> None:
    payload = {"machine": machine(),
               "runs": [{**r.to_json(), "goals": [asdict(g) for g in goals(r)]}
                        for r in results]}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1, default=str),
                    encoding="utf-8")


# -- SVG ---------------------------------------------------------------------------------------------
COLOURS = ("#c0392b", "#2471a3", "#229954", "#b7950b", "#7d3c98", "#616a6b")


def bar_chart(title: str, series: Sequence[tuple[str, Sequence[float]]], x_label: str,
              y_label: str, width: int = 640, height: int = 220) -> str:
    """Grouped bars, one group per x index, one colour per series."""
    left, bottom, top, right = 48, 34, 26, 12
    count = max((len(values) for _, values in series), default=0)
    peak = max((v for _, values in series for v in values), default=0) or 1
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [_svg_open(width, height, title)]
    if count:
        group = plot_w / count
        bar = max(1.0, group * 0.8 / max(1, len(series)))
        for s_index, (_, values) in enumerate(series):
            for i, value in enumerate(values):
                h = plot_h * value / peak
                x = left + i * group + s_index * bar
                parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                             f'height="{h:.1f}" fill="{COLOURS[s_index % len(COLOURS)]}">'
                             f'<title>{i}: {value:g}</title></rect>')
        for i in range(0, count, max(1, count // 12)):
            parts.append(f'<text x="{left + i * group:.1f}" y="{height - 18}" font-size="10">'
                         f'{i}</text>')
    parts += _axes(left, top, plot_w, plot_h, width, height, peak, x_label, y_label)
    parts += _legend([name for name, _ in series], width)
    parts.append("</svg>")
    return "".join(parts)


def cdf_chart(title: str, series: Sequence[tuple[str, Sequence[float]]], x_label: str,
              width: int = 640, height: int = 220) -> str:
    """Cumulative distributions on a log10 x axis (latencies span orders of magnitude)."""
    import math

    left, bottom, top, right = 48, 34, 26, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v > 0]
    parts = [_svg_open(width, height, title)]
    if values:
        low = math.floor(math.log10(min(values)))
        high = math.ceil(math.log10(max(values))) or low + 1
        high = max(high, low + 1)

        def x_of(v: float) -> float:
            return left + plot_w * (math.log10(max(v, 10 ** low)) - low) / (high - low)

        for s_index, (_, vs) in enumerate(series):
            ordered = sorted(v for v in vs if v > 0)
            if not ordered:
                continue
            step = max(1, len(ordered) // 400)
            points = " ".join(
                f"{x_of(v):.1f},{top + plot_h * (1 - (i + 1) / len(ordered)):.1f}"
                for i, v in [*list(enumerate(ordered))[::step], (len(ordered) - 1, ordered[-1])])
            parts.append(f'<polyline fill="none" stroke="{COLOURS[s_index % len(COLOURS)]}" '
                         f'stroke-width="1.5" points="{points}"/>')
        for exponent in range(low, high + 1):
            parts.append(f'<text x="{x_of(10 ** exponent) - 8:.1f}" y="{height - 18}" '
                         f'font-size="10">1e{exponent}</text>')
    parts += _axes(left, top, plot_w, plot_h, width, height, 1.0, x_label, "share ≤ x")
    parts += _legend([name for name, _ in series], width)
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif"><text x="6" y="16" font-size="13" font-weight="bold">'
            f'{html.escape(title)}</text>')


def _axes(left: int, top: int, plot_w: int, plot_h: int, width: int, height: int,
          peak: float, x_label: str, y_label: str) -> list[str]:
    return [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
            'stroke="#333"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
            f'<text x="4" y="{top + 8}" font-size="10">{peak:g}</text>',
            f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" font-size="11">'
            f'{html.escape(x_label)}</text>',
            f'<text x="4" y="{top + plot_h / 2:.0f}" font-size="10" '
            f'transform="rotate(-90 10 {top + plot_h / 2:.0f})">{html.escape(y_label)}</text>']


def _legend(names: Sequence[str], width: int) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        x = width - 200
        y = 14 + 13 * i
        parts.append(f'<rect x="{x}" y="{y - 8}" width="9" height="9" '
                     f'fill="{COLOURS[i % len(COLOURS)]}"/><text x="{x + 13}" y="{y}" '
                     f'font-size="10">{html.escape(name)}</text>')
    return parts


def write_html(results: Sequence[RunFigures], path: Path) -> None:
    names = [f"{r.mode}/{r.faults}" for r in results]
    charts = [
        bar_chart("Orders arriving per hour (the midnight spike)",
                  [(names[0], results[0].arrivals_per_hour)] if results else [],
                  "hour since 23:30 on 11-10", "orders"),
        bar_chart("Oversold units by hour of arrival",
                  [(n, r.oversold_per_hour[:len(r.arrivals_per_hour) or None])
                   for n, r in zip(names, results, strict=True)], "hour", "units"),
        cdf_chart("Stock change → all channels published (wall clock)",
                  [(n, r.publish_wall_ms) for n, r in zip(names, results, strict=True)], "ms"),
        cdf_chart("Stock change → all channels published (simulated)",
                  [(n, r.publish_sim_s) for n, r in zip(names, results, strict=True)], "s"),
        cdf_chart("Order arrival → reserved (simulated)",
                  [(n, r.reserve_sim_s) for n, r in zip(names, results, strict=True)], "s"),
        bar_chart("Resident memory by simulated hour",
                  [(n, [mb for _, mb in r.rss_series]) for n, r in zip(names, results,
                                                                        strict=True)],
                  "hour", "MB"),
    ]
    goal_rows = "".join(
        f'<tr class="{g.verdict.replace("/", "")}"><td>{g.verdict}</td>'
        f'<td>{html.escape(g.name)}</td><td>{html.escape(g.figure)}</td></tr>'
        for r in results for g in goals(r))
    tables = "".join(
        "<h3>" + html.escape(n) + "</h3><table>" + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows(r))
        + "</table>" for n, r in zip(names, results, strict=True))
    facts = ", ".join(f"{k} {v}" for k, v in machine().items())
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>erpsync simulate: a Double-11 day</title><style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px }}
table {{ border-collapse: collapse; margin-bottom: 1em }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px }}
tr.PASS td:first-child {{ color: #1e8449; font-weight: bold }}
tr.FAIL td:first-child {{ color: #c0392b; font-weight: bold }}
svg {{ margin: 0.5em 1em 0.5em 0; border: 1px solid #eee }}
</style></head><body>
<h1>erpsync simulate: a Double-11 day in a box</h1>
<p>Machine: {html.escape(facts)}. Wall-clock figures on a shared machine are noisy;
simulated figures are bounded below by the tick (jobs faster than the tick run once per
tick). p50 of all wall samples: {html.escape(_fmt(percentile(
        [v for r in results for v in r.publish_wall_ms], 50), ' ms'))}.</p>
<h2>Goals</h2><table>{goal_rows}</table>
<h2>Plots</h2>{"".join(charts)}
<h2>Figures</h2>{tables}
</body></html>"""
    path.write_text(page, encoding="utf-8")
