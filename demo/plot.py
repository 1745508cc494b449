"""The demo's picture: VMs (pilots) and claimed slots over the demo's time, as the
dashboard's /api/series gives them, saved as a PNG (matplotlib's Agg backend: no display).

    top:    VMs running, VMs pending, slots claimed   (the paper's running VMs vs claimed slots)
    bottom: jobs idle in the queue, running per entry
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_plot(series: dict[str, Any], start: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = series["points"]
    seconds = [p["t"] - start for p in points]
    fig, (pool, jobs) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True,
                                     height_ratios=(3, 2))
    pool.step(seconds, [p["vms_running"] for p in points], where="post", linewidth=2,
              color="#1f77b4", label="VMs (pilots) running")
    pool.step(seconds, [p["vms_pending"] for p in points], where="post", linestyle="--",
              color="#9ec5e8", label="VMs pending")
    pool.step(seconds, [p["claimed"] for p in points], where="post", linewidth=2,
              color="#ff7f0e", label="slots claimed")
    pool.set_ylabel("count")
    pool.set_title("burstwms demo: running VMs and claimed slots")
    jobs.step(seconds, [p["jobs_idle"] for p in points], where="post", linestyle="--",
              color="#d62728", label="jobs idle (queue)")
    # Entries of earlier demos are still in the window the dashboard folds: draw only those
    # that ran something in this one.
    for entry in [e for e in series["entries"] if any(p["jobs_running"].get(e) for p in points)]:
        jobs.step(seconds, [p["jobs_running"].get(entry, 0) for p in points], where="post",
                  label=f"running at {entry}")
    jobs.set_ylabel("jobs")
    jobs.set_xlabel("seconds since the demo started")
    for axes in (pool, jobs):
        axes.legend(loc="upper right", fontsize="small")
        axes.grid(alpha=0.3)
        axes.set_ylim(bottom=0)
        axes.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
