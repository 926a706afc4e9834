#!/usr/bin/env python3
"""Plots of a load-tests/bench run: reads RESULTS_DIR/results.json and
writes throughput.png, latency.png and (with --scaling) scaling.png next
to it. Usage: plot.py RESULTS_DIR"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "auditchain": "#1f77b4",
    "passthrough": "#7f7f7f",
    "kstreams-peer": "#d62728",
    "verify": "#2ca02c",
    "pure": "#98df8a",
}
LABELS = {
    "auditchain": "auditchain",
    "passthrough": "EOS passthrough\n(copy, no work)",
    "kstreams-peer": "Kafka Streams\npeer",
}


def machine_line(r):
    m = r["machine"]
    mode = " (--quick)" if r["quick"] else ""
    return (
        f"{m['cores']} cores, {m['cpu_model']}, {m['memory_gib']:.0f} GiB; "
        f"load {m['load_average_at_start']:.1f} at start; {r['started_utc']} UTC{mode}"
    )


def throughput(r, out):
    names, values, colors = [], [], []
    for d in r["drains"]:
        if d["steady_per_s"]:
            names.append(LABELS.get(d["system"], d["system"]))
            values.append(d["steady_per_s"])
            colors.append(COLORS.get(d["system"], "#333333"))
    v = r.get("verify_rate")
    if v:
        names.append(f"strict verify\nceiling ({v['threads']} threads)")
        values.append(v["all_cores_per_s"])
        colors.append(COLORS["verify"])
    if r.get("pure_path_all_cores_per_s"):
        names.append("pure path\n(no Kafka)")
        values.append(r["pure_path_all_cores_per_s"])
        colors.append(COLORS["pure"])
    fig, ax = plt.subplots(figsize=(9, 5))
    bars = ax.bar(names, values, color=colors)
    for b, val in zip(bars, values):
        ax.annotate(
            f"{val:,.0f}",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=10,
        )
    ax.set_ylabel("events/s (steady state)")
    ax.set_title(
        f"Throughput: {r['events']:,} events, {r['tenants']:,} tenants, "
        f"{r['payload']} B, {r['partitions']} partitions"
    )
    ax.set_ylim(0, max(values) * 1.15 if values else 1)
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.grid(axis="y", alpha=0.3)
    fig.text(0.5, 0.01, machine_line(r), ha="center", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)


def latency(r, out):
    if not r["latency"]:
        return
    fig, ax = plt.subplots(figsize=(11, 5.5))
    styles = {"p50_ms": ("o", "-", "p50"), "p99_ms": ("s", "--", "p99"), "p999_ms": ("^", ":", "p99.9")}
    for lat in r["latency"]:
        color = COLORS.get(lat["system"], "#333333")
        xs = [s["offered_per_s"] for s in lat["steps"]]
        for key, (marker, line, name) in styles.items():
            ys = [s[key] for s in lat["steps"]]
            pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
            if pts:
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    marker=marker,
                    linestyle=line,
                    color=color,
                    label=f"{lat['system']} {name}",
                )
    ax.axhline(250, color="#999999", linewidth=0.8)
    ax.annotate("p99 target 250 ms", (ax.get_xlim()[0], 250), va="bottom", fontsize=8, color="#777777")
    ax.set_yscale("log")
    # Plain milliseconds on the log axis, not powers of ten.
    plain = matplotlib.ticker.StrMethodFormatter("{x:,.0f}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("offered load, events/s (25%, 50%, 75% of each system's measured maximum)")
    ax.set_ylabel("produce → visible (read_committed), ms")
    ax.set_title(f"End-to-end latency under load ({r['latency'][0]['step_s']} s per step)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.text(0.5, 0.01, machine_line(r), ha="center", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)


def scaling(r, out):
    if not r["scaling"]:
        return
    dims = [
        ("tenants", "tenants", True),
        ("partitions", "input partitions", True),
        ("payload", "payload bytes", True),
        ("instances", "auditchain instances", False),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (dim, xlabel, log) in zip(axes.flat, dims):
        pts = sorted(
            (p["value"], p["drain"]["steady_per_s"], sum(p["drain"]["peak_rss_mib"]))
            for p in r["scaling"]
            if p["dimension"] == dim and p["drain"]["steady_per_s"]
        )
        if not pts:
            ax.set_visible(False)
            continue
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", color=COLORS["auditchain"], label="events/s")
        ax.set_ylim(0, max(p[1] for p in pts) * 1.2)
        ax.set_ylabel("steady events/s", color=COLORS["auditchain"])
        ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        ax2 = ax.twinx()
        ax2.plot(xs, [p[2] for p in pts], marker="s", linestyle="--", color="#ff7f0e", label="peak RSS")
        ax2.set_ylim(0, max(p[2] for p in pts) * 1.3)
        ax2.set_ylabel("peak RSS MiB (sum of instances)", color="#ff7f0e")
        if log:
            ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:,}" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    fig.suptitle("auditchain scaling (one dimension at a time from the base layout)")
    fig.text(0.5, 0.01, machine_line(r), ha="center", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    r = json.loads((out / "results.json").read_text())
    throughput(r, out)
    latency(r, out)
    scaling(r, out)
    written = sorted(p.name for p in out.glob("*.png"))
    print(f"plots: {', '.join(written)}", file=sys.stderr)


if __name__ == "__main__":
    main()
