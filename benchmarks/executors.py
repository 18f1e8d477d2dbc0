"""Study executors side by side (issue 31): one label-budget study run four ways, one after the other.

1. ``--executor local --threads 1``
2. ``--executor ray --threads 1`` on a one-node Ray cluster (a head started here with ``--num-cpus=1``)
3. ``--executor local --threads 2``
4. ``--executor ray --threads 1`` after a second 1-CPU node joined (two cells at once)

Wall time is the whole command (start, Ray connection and storage check, cells, report); cell times are
``elapsed_s`` in ``study.json``. Prints a Markdown table, whether each ``results.csv`` is byte-equal to the local
one-thread one, and the wall time projected on N nodes from the local one-thread cell times plus the Ray run's fixed overhead
(cells placed longest first on the least-loaded node). Run it alone on an idle machine (nothing else heavy at
the same time, e.g. under a shared lock file with ``flock``):

    .venv/bin/python benchmarks/executors.py
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STUDY = ["finetune", "--shots", "4,8", "--seeds", "0,1,2", "data.limit=200", "tracking.tensorboard=false",
         "run_name=b"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return dict(os.environ, RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def run_study(out: Path, *extra: str) -> tuple[float, list[float], set]:
    """(wall seconds, cell seconds, the nodes that ran cells) of one run of the study into ``out``."""
    began = time.perf_counter()
    proc = subprocess.run([str(BIN / "transferlab"), *STUDY, "--output-dir", str(out), *extra], env=env(),
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"the study failed ({' '.join(extra)}): {proc.stderr[-2000:]}")
    state = json.loads((out / "study" / "b" / "study.json").read_text())
    return wall, [c["elapsed_s"] for c in state["cells"]], {(c["node"] or {}).get("id", (c["node"] or {}).get("host"))
                                                          for c in state["cells"]}


def ray_node(base: Path, port: int, head: bool) -> subprocess.Popen:
    common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", "--block"]
    command = ([str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}", f"--temp-dir={base / 'ray-tmp'}"] if head
               else [str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}"])
    log = (base / ("head.log" if head else "worker.log")).open("w")
    return subprocess.Popen(command + common, env=env(), stdout=log, stderr=subprocess.STDOUT)


def wait_nodes(address: str, count: int, timeout: float = 180) -> None:
    import ray
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="warning")
            alive = sum(n["Alive"] for n in ray.nodes())
        except Exception:  # noqa: BLE001 (the head is still starting)
            alive = 0
        finally:
            ray.shutdown()
        if alive >= count:
            return
        time.sleep(2)
    raise SystemExit(f"the Ray cluster at {address} did not reach {count} node(s)")


def projected(cells: list[float], overhead: float, nodes: int) -> float:
    loads = [0.0] * nodes
    for cell in sorted(cells, reverse=True):
        loads[loads.index(min(loads))] += cell
    return max(loads) + overhead


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="tl-executors-"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    rows = {}
    try:
        rows["local, `--threads 1`"] = run_study(base / "local1", "--threads", "1")
        procs.append(ray_node(base, port, head=True))
        wait_nodes(address, 1)
        rows["Ray, one 1-CPU node, `--threads 1`"] = run_study(base / "ray1", "--threads", "1", "--executor", "ray",
                                                               "--ray-address", address)
        rows["local, `--threads 2`"] = run_study(base / "local2", "--threads", "2")
        procs.append(ray_node(base, port, head=False))
        wait_nodes(address, 2)
        rows["Ray, two 1-CPU nodes, `--threads 1`"] = run_study(base / "ray2", "--threads", "1", "--executor", "ray",
                                                                "--ray-address", address)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"load average before the last run ended: {os.getloadavg()}")
    print("| executor | wall | cells (s) | sum of cells | nodes used |\n|---|---|---|---|---|")
    for name, (wall, cells, nodes) in rows.items():
        print(f"| {name} | {wall:.1f} s | {', '.join(f'{c:.1f}' for c in cells)} | {sum(cells):.1f} s | {len(nodes)} |")
    csvs = {name: (base / folder / "study" / "b" / "results.csv").read_bytes()
            for name, folder in zip(rows, ("local1", "ray1", "local2", "ray2"))}
    reference = csvs["local, `--threads 1`"]
    for name, data in csvs.items():  # the same draws; at one thread per cell the figures must be equal
        print(f"results.csv of {name}: {'byte-equal to' if data == reference else 'DIFFERS from'} local at one thread")
    (l_wall, l_cells, _), (r_wall, r_cells, _) = rows["local, `--threads 1`"], rows["Ray, one 1-CPU node, `--threads 1`"]
    print(f"Ray overhead, one node against local at one thread: {r_wall / l_wall - 1:+.1%} "
          f"(outside the cells: local {l_wall - sum(l_cells):.1f} s, Ray {r_wall - sum(r_cells):.1f} s)")
    overhead = r_wall - sum(r_cells)
    print("projected wall on N nodes (local one-thread cells + Ray's overhead): "
          + ", ".join(f"N = {n}: {projected(l_cells, overhead, n):.1f} s" for n in (1, 2, 4, 8)))
    if len(set(csvs.values())) == 1:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"the four studies are kept in {base}")


if __name__ == "__main__":
    main()
