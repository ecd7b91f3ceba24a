"""The report: medians per client, the table, the targets, the machine line and the plot."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import platform
import statistics
import subprocess
import textwrap
from pathlib import Path
from typing import List, Optional, Tuple

from bench.harness import Run
from bench.measure import curl_version
from bench.scenarios import (
    COMM_SDK, COMM_UP, CURL, FDFS_GET, FDFS_PUT, FDFS_PUT_LOOP, FDFS_PUT_MANY, FDFS_PUT_ONE, FDFS_PUT_RESUME,
    FDFS_SDK_GET, FDFS_SDK_LOOP, FDFS_SDK_PUT, PART, TUSPY, TUSPY_LOOP, UPCLIENT, UPCLIENT_8, UPCLIENT_C4,
    UPCLIENT_MANY, UPYUN_MULTI, UPYUN_RESUME, UPYUN_UP, UPYUN_UP_C4, UPYUN_UP_NOSUM, ClientSpec, MiB, Scenario,
    GiB, size_label,
)


@dataclasses.dataclass
class Row:
    scenario: str
    client: str
    size: int
    files: int
    runs: int
    failed: int
    mbps: Optional[float]  # median over rounds
    mbps_min: Optional[float]
    mbps_max: Optional[float]
    files_per_s: Optional[float]
    ratio: Optional[float]  # reference upclient / this client (median MB/s)
    peak_rss_mib: Optional[float]  # max over rounds
    cpu_seconds: Optional[float]  # median
    label: str
    seconds: Optional[float] = None  # median elapsed (printed for h)
    cpu_per_gib: Optional[float] = None  # median of the runs' process CPU seconds per GiB moved
    upload_cpu_per_gib: Optional[float] = None  # the same, the upload's own CPU (no start-up, no imports)


def summarize(runs: List[Run], scens: List[Scenario]) -> List[Row]:
    rows: List[Row] = []
    for sc in scens:
        for size in sc.sizes:
            ref_mbps = None
            groups: List[Tuple[ClientSpec, List[Run]]] = []
            for spec in sc.clients:
                group = [r for r in runs if r.scenario == sc.key and r.client == spec.id and r.size == size]
                if group:
                    groups.append((spec, group))
            for spec, group in groups:
                if spec == sc.reference:
                    ok = [r.mbps for r in group if r.ok and r.verified and r.mbps is not None]
                    ref_mbps = statistics.median(ok) if ok else None
            for spec, group in groups:
                good = [r for r in group if r.ok and r.verified]
                speeds = [r.mbps for r in good if r.mbps is not None]
                med = statistics.median(speeds) if speeds else None
                rss = [r.peak_rss_mib for r in group if r.peak_rss_mib]
                cpu = [r.cpu_seconds for r in good if r.cpu_seconds is not None]
                fps = [r.files_per_s for r in good if r.files_per_s is not None]
                per_gib = [r.cpu_seconds / (r.bytes / GiB) for r in good if r.cpu_seconds is not None and r.bytes]
                upload_per_gib = [r.upload_cpu_seconds / (r.bytes / GiB) for r in good
                                  if r.upload_cpu_seconds is not None and r.bytes]
                rows.append(Row(
                    scenario=sc.key, client=spec.id, size=size, files=sc.count, runs=len(group),
                    failed=len(group) - len(good), mbps=med,
                    mbps_min=min(speeds) if speeds else None, mbps_max=max(speeds) if speeds else None,
                    files_per_s=statistics.median(fps) if fps else None,
                    ratio=(ref_mbps / med) if (ref_mbps and med and spec != sc.reference) else None,
                    peak_rss_mib=max(rss) if rss else None,
                    cpu_seconds=statistics.median(cpu) if cpu else None,
                    label=next((r.label for r in group if r.label), spec.kind),
                    seconds=statistics.median([r.elapsed for r in good if r.elapsed]) if good else None,
                    cpu_per_gib=statistics.median(per_gib) if per_gib else None,
                    upload_cpu_per_gib=statistics.median(upload_per_gib) if upload_per_gib else None,
                ))
    return rows


def print_table(rows: List[Row]) -> None:
    head = (f"{'':2}{'client':<24}{'data':>14}{'MB/s':>9}{'(min-max)':>18}{'files/s':>9}"
            f"{'upclient/x':>11}{'peak RSS MiB':>13}{'cpu s':>7}{'cpu/GiB':>9}{'upload/GiB':>11}")
    print("\n" + head)
    print("-" * len(head))
    last = None
    for row in rows:
        if row.scenario != last:
            print(f"{row.scenario}.")
            last = row.scenario
        data = size_label(row.size) + (f" x{row.files}" if row.files > 1 else "")
        mbps = f"{row.mbps:9.1f}" if row.mbps is not None else f"{'failed':>9}"
        span = (f"{row.mbps_min:8.1f}-{row.mbps_max:<8.1f}" if row.mbps_min is not None and row.runs > 1
                else f"{'':18}") if row.mbps is not None else f"{'':18}"
        fps = f"{row.files_per_s:9.0f}" if (row.files > 1 and row.files_per_s) else f"{'':9}"
        ratio = f"{row.ratio:10.2f}x" if row.ratio else f"{'':11}"
        rss = f"{row.peak_rss_mib:13.1f}" if row.peak_rss_mib else f"{'':13}"
        cpu = f"{row.cpu_seconds:7.2f}" if row.cpu_seconds is not None else f"{'':7}"
        cpu += f"{row.cpu_per_gib:9.2f}" if row.cpu_per_gib is not None else f"{'':9}"
        cpu += f"{row.upload_cpu_per_gib:11.2f}" if row.upload_cpu_per_gib is not None else f"{'':11}"
        if row.mbps is not None and row.mbps >= 1e5:  # h's cache hit: no bytes read, the time says it
            mbps, span = f"{'>100000':>9}", f"{'':18}"
        fail = f"  ({row.failed}/{row.runs} failed)" if row.failed else ""
        if row.scenario == "h" and row.seconds is not None:
            fail = f"  {row.seconds * 1000:.1f} ms" + fail
        print(f"  {row.client:<24}{data:>14}{mbps}{span:>18}{fps}{ratio}{rss}{cpu}{fail}")
    print("cpu s: user + system seconds of the client's process (curl: both of its processes), start-up "
          "and imports included, median;\ncpu/GiB: the same per GiB moved; upload/GiB: the CPU of the upload "
          "alone per GiB (Python clients: from the client's construction to its close, measured in its "
          "process; curl: its processes, which start in milliseconds)")


@dataclasses.dataclass
class Target:
    name: str
    met: Optional[bool]  # None: not measured
    detail: str


def check_targets(rows: List[Row], quick: bool) -> List[Target]:
    def get(scenario: str, client_id: str, size: Optional[int] = None) -> Optional[Row]:
        for row in rows:
            if row.scenario == scenario and row.client == client_id and (size is None or row.size == size):
                return row
        return None

    def speed(row: Optional[Row]) -> Optional[float]:
        return row.mbps if row is not None else None

    def at_least(name: str, missing: str, ours: Optional[float], theirs: Optional[float], factor: float,
                 unit: str = "MB/s", digits: int = 0) -> Target:
        """Target ``ours >= factor * theirs``, or 'not measured'."""
        if not ours or not theirs:
            return Target(missing, None, "not measured")
        return Target(name, ours >= factor * theirs,
                      f"{ours:.{digits}f} vs {theirs:.{digits}f} {unit} ({ours / theirs:.2f}x)")

    def cpu_at_most(name: str, ours: Optional[Row], theirs: Optional[Row]) -> Target:
        """Target: ``ours`` spends no more CPU per GiB than ``theirs`` (the process's, start-up included)."""
        if ours is None or theirs is None or ours.cpu_per_gib is None or not theirs.cpu_per_gib:
            return Target(name, None, "not measured")
        upload = f"; the upload alone {ours.upload_cpu_per_gib:.2f}" if ours.upload_cpu_per_gib is not None else ""
        return Target(name, ours.cpu_per_gib <= theirs.cpu_per_gib,
                      f"{ours.cpu_per_gib:.2f} vs {theirs.cpu_per_gib:.2f} s/GiB "
                      f"({ours.cpu_per_gib / theirs.cpu_per_gib:.2f}x){upload}")

    out: List[Target] = []
    up, curl, tuspy = speed(get("a", UPCLIENT.id)), speed(get("a", CURL.id)), speed(get("a", TUSPY.id))
    if up and curl and tuspy:
        out.append(at_least("sink loopback: upclient >= 1.3x curl", "", up, curl, 1.3))
        out.append(at_least("sink loopback: upclient >= 2x tuspy", "", up, tuspy, 2))
        out.append(cpu_at_most("sink loopback: upclient's CPU per GiB <= curl's", get("a", UPCLIENT.id),
                               get("a", CURL.id)))
    else:
        out.append(Target("sink loopback (a)", None, "not measured"))
    out.append(at_least("HTTPS loopback: upclient >= curl", "HTTPS loopback (n)",
                        speed(get("n", UPCLIENT.id)), speed(get("n", CURL.id)), 1))
    out.append(at_least("@tus/server loopback: upclient within 5% of curl", "@tus/server loopback (b)",
                        speed(get("b", UPCLIENT.id)), speed(get("b", CURL.id)), 0.95))
    out.append(at_least("shaped link: upclient c=4 >= 3.5x tuspy", "shaped link (c)",
                        speed(get("c", UPCLIENT_C4.id)), speed(get("c", TUSPY.id)), 3.5, digits=1))
    many, loop = get("d", UPCLIENT_MANY.id), get("d", TUSPY_LOOP.id)
    out.append(at_least("small files: upclient put_many >= 6x tuspy loop", "small files (d)",
                        many.files_per_s if many else None, loop.files_per_s if loop else None, 6,
                        unit="files/s"))
    rss = [(row.size, row.peak_rss_mib) for row in rows
           if row.scenario == "e" and row.client == UPCLIENT_8.id and row.peak_rss_mib]
    if rss:
        rss.sort()
        biggest_size, biggest = rss[-1]
        spread = max(r for _, r in rss) - min(r for _, r in rss)
        flat = spread <= PART / MiB
        label = "2 GiB" if not quick else size_label(biggest_size)
        out.append(Target(f"peak RSS for {label} < 100 MiB and flat (spread <= 8 MiB)",
                          biggest < 100 and flat,
                          ", ".join(f"{size_label(s)}: {r:.1f} MiB" for s, r in rss)
                          + f"; spread {spread:.1f} MiB"))
    else:
        out.append(Target("peak RSS (e)", None, "not measured"))
    up_row, sdk_row = get("f", COMM_UP.id), get("f", COMM_SDK.id)
    out.append(at_least("community loopback: upclient >= 1.3x SDK", "community loopback throughput (f)",
                        speed(up_row), speed(sdk_row), 1.3))
    if up_row and sdk_row and up_row.peak_rss_mib and sdk_row.peak_rss_mib:
        a, b = up_row.peak_rss_mib, sdk_row.peak_rss_mib
        out.append(Target("community loopback: upclient peak RSS <= 1/2 SDK's", a <= b / 2,
                          f"{a:.0f} vs {b:.0f} MiB ({a / b:.2f}x)"))
    else:
        out.append(Target("community peak RSS (f)", None, "not measured"))
    # like with like: the SDK sends no checksums in either mode, so neither does upclient here
    # (upclient's default per-part Content-MD5 is reported in the table, with its cost)
    up_i = speed(get("i", UPYUN_UP_NOSUM.id))
    out.append(at_least("UPYUN loopback, no checksums: upclient >= SDK resume upload",
                        "UPYUN loopback vs resume (i)", up_i, speed(get("i", UPYUN_RESUME.id)), 1))
    out.append(at_least("UPYUN loopback, no checksums: upclient >= SDK multi uploader x4",
                        "UPYUN loopback vs multi (i)", up_i, speed(get("i", UPYUN_MULTI.id)), 1))
    out.append(at_least("UPYUN loopback: upclient with its checksums >= SDK resume upload without",
                        "UPYUN loopback defaults vs resume (i)", speed(get("i", UPYUN_UP.id)),
                        speed(get("i", UPYUN_RESUME.id)), 1))
    defaults = get("i", UPYUN_UP.id)
    out.append(at_least("UPYUN loopback: upclient with its checksums >= 0.8x SDK multi uploader x4 without",
                        "UPYUN loopback defaults vs multi (i)", speed(defaults),
                        speed(get("i", UPYUN_MULTI.id)), 0.8))
    if defaults is not None and defaults.peak_rss_mib:
        out.append(Target("UPYUN loopback: upclient with its checksums at <= 48 MiB peak RSS",
                          defaults.peak_rss_mib <= 48, f"{defaults.peak_rss_mib:.1f} MiB"))
    else:
        out.append(Target("UPYUN peak RSS with checksums (i)", None, "not measured"))
    out.append(at_least("UPYUN shaped link: upclient c=4 >= 3x SDK resume upload", "UPYUN shaped link (j)",
                        speed(get("j", UPYUN_UP_C4.id)), speed(get("j", UPYUN_RESUME.id)), 3, digits=1))
    # FastDFS, all against fastdfs-client 1.3.0 on the same emulator (45-byte IPs)
    big = "64 MiB" if quick else "1 GiB"
    sdk_put = speed(get("k", FDFS_SDK_PUT.id))
    out.append(at_least(f"FastDFS {big} upload: upclient put >= 1x SDK", "FastDFS upload (k)",
                        speed(get("k", FDFS_PUT.id)), sdk_put, 1))
    out.append(at_least(f"FastDFS {big} upload: upclient resumable=False >= 1x SDK (one request each)",
                        "FastDFS one-request upload (k)", speed(get("k", FDFS_PUT_ONE.id)), sdk_put, 1))
    out.append(at_least(f"FastDFS {big} upload: upclient resumable=True >= 1x SDK (one request)",
                        "FastDFS resumable upload (k)", speed(get("k", FDFS_PUT_RESUME.id)), sdk_put, 1))
    out.append(at_least(f"FastDFS {big} download: upclient get >= 1x SDK", "FastDFS download (l)",
                        speed(get("l", FDFS_GET.id)), speed(get("l", FDFS_SDK_GET.id)), 1))

    def fps(client_id: str) -> Optional[float]:
        row = get("m", client_id)
        return row.files_per_s if row is not None else None

    out.append(at_least("FastDFS small files: upclient put loop >= 1x SDK loop", "FastDFS small files (m)",
                        fps(FDFS_PUT_LOOP.id), fps(FDFS_SDK_LOOP.id), 1, unit="files/s"))
    out.append(at_least("FastDFS small files: upclient put_many >= 1.5x SDK loop", "FastDFS small files, put_many (m)",
                        fps(FDFS_PUT_MANY.id), fps(FDFS_SDK_LOOP.id), 1.5, unit="files/s"))
    return out


def machine_line() -> str:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
                break
    node = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
        node = ", node " + out.stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {platform.system()} {platform.release()}; {cpu}, {os.cpu_count()} cores{mem}; "
            f"Python {platform.python_version()}; {curl_version()}{node}")


def plot(rows: List[Row], scens: List[Scenario], targets: List[Target], path: Path, title: str) -> None:
    """One panel per scenario (upclient in blue, peers in grey, peak RSS over each bar) and the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [sc for sc in scens if any(r.scenario == sc.key for r in rows)]
    if not panels:
        return
    count = len(panels) + 1
    cols = min(3, count)
    nrows = -(-count // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.4 * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax, sc in zip(flat, panels):
        mine = [r for r in rows if r.scenario == sc.key]
        if sc.key == "e":
            values = [r.peak_rss_mib or 0 for r in mine]
            ax.bar([size_label(r.size) for r in mine], values, color="#1f77b4")
            ax.axhline(100, color="#d62728", linestyle="--", linewidth=1)
            ax.text(0.02, 100, " target < 100 MiB", color="#d62728", va="bottom", fontsize=7,
                    transform=ax.get_yaxis_transform())
            ax.set_ylabel("peak RSS (MiB)")
            ax.set_xlabel("file size")
            ax.set_ylim(0, 115)
        else:
            labels = [r.client.replace("resumable-upload", "r-u") for r in mine]
            if sc.count > 1:  # d, m: many small files
                values = [r.files_per_s or 0 for r in mine]
                ax.set_ylabel("files/s (median)")
            else:
                values = [r.mbps or 0 for r in mine]
                ax.set_ylabel("MB/s (median)")
            colors = ["#1f77b4" if r.client.startswith("upclient") else "#9a9a9a" for r in mine]
            xs = range(len(values))
            ax.bar(xs, values, color=colors)
            for i, r in enumerate(mine):
                if r.mbps_min is not None and r.runs > 1 and sc.count == 1:
                    ax.plot([i, i], [r.mbps_min, r.mbps_max], color="black", linewidth=1)
                if r.peak_rss_mib:
                    ax.annotate(f"{r.peak_rss_mib:.0f} MiB", (i, values[i]), ha="center", va="bottom",
                                fontsize=7, xytext=(0, 2), textcoords="offset points")
            if sc.key == "h":
                ax.set_yscale("log")  # the cache hit is orders of magnitude above the rest
                ax.set_ylabel("MB/s (median, log)")
            ax.set_xticks(list(xs))
            ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
            ax.margins(y=0.12)
        ax.set_title(textwrap.fill(f"{sc.key}. {sc.title}", 60), fontsize=9)
    ax = flat[len(panels)]
    measured = [t for t in targets if t.met is not None]
    if measured:
        names = [t.name for t in measured]
        ax.barh(range(len(measured)), [1] * len(measured),
                color=["#2ca02c" if t.met else "#d62728" for t in measured])
        ax.set_yticks(range(len(measured)))
        ax.set_yticklabels([""] * len(measured))
        for i, (name, t) in enumerate(zip(names, measured)):
            ax.text(0.02, i, f"{'MET' if t.met else 'MISS'}: {name}\n{t.detail}", va="center", fontsize=6.5,
                    color="white")
        ax.invert_yaxis()
        ax.set_xticks([])
    ax.set_title("targets", fontsize=9)
    for extra in flat[len(panels) + 1:]:
        extra.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
