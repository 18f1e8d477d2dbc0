"""Where a study's cells run: one after the other in this process (``local``, the default), or as Ray tasks on a
cluster (``ray``: ``--ray-address`` or ``RAY_ADDRESS``, else a Ray instance started on this machine).

The driver (the study's own process) alone writes ``study.json``: it marks a cell running when it hands it
out and records what comes back (status, error, wall time, the node that ran it, the attempts). Wherever a
cell runs, :func:`execute_cell` runs it the same way: the attempt rule (``tracking.ledger.next_attempt``: a
finetune cell with checkpoints continues from its last one; any other unfinished folder is set aside and the
cell starts afresh), the experiment's run with ``progress=False``, the checkpoints dropped once it completed.
Its console output goes to ``<study>/cells/<run_dir>.log`` (``show_output``: to the console instead).

On Ray each cell is one task asking for ``--threads`` CPUs (1 without) and one GPU when its config's
device asks for CUDA (or is ``auto`` on a cluster that has GPUs). A task whose worker process or node dies
is run again by Ray (``max_retries``); the new attempt finds the earlier one in
``<study>/cells/<run_dir>.attempts.json``, marks its run killed and continues from its checkpoint. Cells
sharing a cache (the frozen features of one model: ``<study>/cache/<folder>``) wait for the first of them,
which fills the cache in the shared study folder; the others then read it on whatever node they run. Before
the first cell, every node that can run one reads a token file the driver wrote into the study folder: a node
that cannot is named in one line with what to mount.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Protocol

from transferlab.config import to_dict, value_at
from transferlab.errors import TransferlabError
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.tracking.files import inside, read_json, write_json
from transferlab.tracking.ledger import mark_killed, next_attempt
from transferlab.tracking.rundir import COMPLETED, FAILED, RUNNING, Run

LOCAL, RAY = "local", "ray"
EXECUTORS = (LOCAL, RAY)
# Settings a worker takes from the driver's environment (the rest of its environment is its node's own).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")


@dataclass(frozen=True)
class Executor:
    """How a study runs its cells. ``threads``: each cell's CPU threads (and its Ray task's ``num_cpus``);
    ``memory_gib``: the memory each cell's Ray task reserves (``None``: none, Ray schedules by CPUs and GPUs);
    ``max_retries``: Ray's new attempts of a cell whose worker or node died."""

    kind: str = LOCAL
    address: str | None = None
    threads: int | None = None
    max_retries: int = 3
    show_output: bool = False
    memory_gib: float | None = None

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise TransferlabError(f"executor {self.kind!r} is unknown: use {' or '.join(EXECUTORS)}")
        if self.address and self.kind != RAY:
            raise TransferlabError("--ray-address goes with --executor ray: add it, or leave the address out")
        if self.memory_gib is not None and self.kind != RAY:
            raise TransferlabError("--memory reserves memory for Ray tasks: add --executor ray, or leave it out")
        if self.max_retries < 0 or (self.threads is not None and self.threads < 1):
            raise TransferlabError("a cell needs at least 1 thread and 0 or more retries")


class Recorder(Protocol):
    """The driver's side (``studies.shots``): the one writer of ``study.json``."""

    def submitted(self, cell: dict, resources: dict | None = None) -> None: ...
    def started(self, cell: dict, where: str | None) -> None: ...
    def done(self, cell: dict, outcome: dict) -> None: ...
    def abandoned(self, cell: dict, error: str, elapsed_s: float | None = None) -> None: ...
    def console(self) -> contextlib.AbstractContextManager: ...


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def this_node() -> dict:
    """The host running this code, and on Ray its node id and address."""
    node = {"host": socket.gethostname()}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        with contextlib.suppress(Exception):
            node.update(id=ray.get_runtime_context().get_node_id(), ip=ray.util.get_node_ip_address())
    return node


def cell_file(study_dir: Path, run_dir: str, suffix: str) -> Path:
    """``<study>/cells/<run_dir><suffix>`` (its folder made), checked to lie inside the study."""
    path = Path(study_dir) / "cells" / f"{run_dir}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    inside(path.parent, study_dir, "cell log folder")
    return path


@contextlib.contextmanager
def cell_output(study_dir: Path, run_dir: str, show: bool) -> Iterator[None]:
    """Inside: what the cell prints goes to ``<study>/cells/<run_dir>.log`` (appended, one header per
    attempt; never through a link), or stays on the console with ``show``."""
    if show:
        yield
        return
    path = cell_file(study_dir, run_dir, ".log")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise TransferlabError(f"cannot open the cell log {path} ({exc.strerror}): remove it if it is a link, "
                               f"then run again") from None
    with os.fdopen(fd, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"== {run_dir}: attempt on {socket.gethostname()} (pid {os.getpid()}) at {now()}")
        yield


def latest_checkpoint_name(folder: Path) -> str | None:
    from transferlab.training.checkpoints import latest_checkpoint

    found = latest_checkpoint(folder)
    return found.name if found else None


def execute_cell(study_dir: Path, cell: dict, config) -> dict:
    """One cell, where it runs (this process or a Ray worker): the attempt rule, the experiment's run, the
    checkpoints dropped once it completed. Returns what the driver records: ``status``, ``error``,
    ``elapsed_s``, ``node``, ``resumed_from``; with ``stop`` (and the error's ``message``) when the error is
    the input's, raised before the cell's folder existed (the same for every cell): the study stops. A
    KeyboardInterrupt goes through."""
    experiment = EXPERIMENTS[cell["experiment"]]
    folder = Path(study_dir) / cell["run_dir"]
    begin = time.perf_counter()
    resume = next_attempt(folder, experiment.resumable)
    outcome = {"node": this_node(), "resumed_from": latest_checkpoint_name(folder) if resume else None}
    try:
        experiment.run(config, study_dir, resume=resume, progress=False)
    except TransferlabError as exc:
        outcome.update(status=FAILED, error=f"{exc.__class__.__name__}: {exc}")
        if not folder.exists():
            outcome.update(stop=True, message=str(exc))
        print(f"cell {cell['run_dir']} failed: {outcome['error']}")
    except Exception as exc:  # noqa: BLE001 - one cell's failure is recorded; the other cells still run
        outcome.update(status=FAILED, error=f"{exc.__class__.__name__}: {exc}")
        traceback.print_exc()
    else:
        outcome["status"] = COMPLETED
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the final weights are in model/
    outcome["elapsed_s"] = round(time.perf_counter() - begin, 1)
    return outcome


class LocalCells:
    """The cells one after the other in this process (today's behaviour)."""

    slots = 1

    def __init__(self, executor: Executor, study_dir: Path):
        self.executor, self.study_dir = executor, Path(study_dir)

    def __enter__(self) -> "LocalCells":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, jobs: list[tuple[dict, object]], recorder: Recorder) -> None:
        for cell, config in jobs:
            recorder.submitted(cell)
            recorder.started(cell, socket.gethostname())
            begin = time.perf_counter()
            try:
                with recorder.console(), cell_output(self.study_dir, cell["run_dir"], self.executor.show_output):
                    outcome = execute_cell(self.study_dir, cell, config)
            except KeyboardInterrupt as exc:
                recorder.abandoned(cell, f"{exc.__class__.__name__}: {exc or 'interrupted'}",
                                   round(time.perf_counter() - begin, 1))
                raise
            recorder.done(cell, outcome)


def open_cells(executor: Executor, study_dir: Path):
    """The cells' runner for ``executor`` (a context: on Ray it connects and checks the shared storage)."""
    return LocalCells(executor, study_dir) if executor.kind == LOCAL else RayCells(executor, study_dir)


# What runs on a Ray worker -------------------------------------------------------------------------------------

def attempts_of(study_dir: Path, run_dir: str, submission: str) -> list[dict]:
    """The attempts recorded for this hand-out of a cell (another hand-out's, or a damaged file: none)."""
    path = Path(study_dir) / "cells" / f"{run_dir}.attempts.json"
    try:
        record = read_json(path, "cell attempts") if path.is_file() and not path.is_symlink() else {}
    except TransferlabError:
        return []
    if not isinstance(record, dict) or record.get("submission") != submission:
        return []
    return [a for a in record.get("attempts", []) if isinstance(a, dict)]


def record_attempt(study_dir: Path, run_dir: str, submission: str) -> list[dict]:
    """This attempt appended to the cell's attempts (one attempt of a task runs at a time); all of them."""
    attempts = attempts_of(study_dir, run_dir, submission)
    attempts.append({**this_node(), "pid": os.getpid(), "started": now()})
    write_json(cell_file(study_dir, run_dir, ".attempts.json"), {"submission": submission, "attempts": attempts})
    return attempts


def retire_dead_attempt(folder: Path, experiment: str) -> None:
    """Ray runs a task again only once its earlier attempt's worker died: a run it left marked running is
    recorded as killed (wherever that worker ran, whatever its heartbeat says), so it can be resumed."""
    run = Run(folder, experiment)
    status = run.status() if folder.is_dir() else {}
    if status.get("status") == RUNNING:
        mark_killed(run, status)


def ray_cell(study_dir: str, cell: dict, config, threads: int, submission: str, env: dict, cwd: str,
             show_output: bool) -> dict:
    """A Ray task: one cell on whichever worker Ray chose, with the driver's offline settings, working
    directory (where the node has it) and thread budget. Returns :func:`execute_cell`'s outcome."""
    from transferlab.models.device import set_threads

    logging.getLogger("ray").setLevel(logging.WARNING)
    os.environ.update(env)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    set_threads(threads)
    study = Path(study_dir)
    attempts = record_attempt(study, cell["run_dir"], submission)
    with cell_output(study, cell["run_dir"], show_output):
        if len(attempts) > 1:
            print(f"note: attempt {len(attempts)}: the worker of attempt {len(attempts) - 1} "
                  f"(pid {attempts[-2].get('pid')} on {attempts[-2].get('host')}) died")
            retire_dead_attempt(study / cell["run_dir"], cell["experiment"])
        return execute_cell(study, cell, config)


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in FORWARDED_ENV or k.startswith("TRANSFERLAB_")}


def gpus_for(config, cluster_gpus: float) -> int:
    """1 when a device setting of the config (any key named ``device``) asks for CUDA, or is ``auto`` on a
    cluster with GPUs; else 0 (and Ray hides the GPUs from the task, so ``auto`` is the CPU there)."""
    devices = []

    def walk(tree: dict) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value)
            elif key == "device" and isinstance(value, str):
                devices.append(value)

    walk(to_dict(config))
    if any(d.startswith("cuda") for d in devices):
        return 1
    return int(cluster_gpus > 0 and "auto" in devices)


def cache_group(cell: dict, config) -> str | None:
    """The shared cache a cell fills or reads (its experiment's registry entry), or ``None``."""
    shared = EXPERIMENTS[cell["experiment"]].shared_cache
    value = value_at(config, shared[0]) if shared else None
    return str(value) if value else None


# The driver's side on Ray --------------------------------------------------------------------------------------

POLL_S = 1.0  # how often the driver looks for cells that have started
STORAGE_CHECK_S = float(os.environ.get("TRANSFERLAB_STORAGE_CHECK_S", 180))  # for every node to read the token


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


def ray_error(exc: BaseException) -> str:
    """``Class: first line`` of what went wrong in a Ray task: the task's own exception (``RayTaskError.cause``,
    whose own first line only names the task), else Ray's (a lost worker or node)."""
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, BaseException) else exc
    return f"{exc.__class__.__name__}: {first_line(exc)}"


def import_ray():
    try:
        import ray
    except ImportError:
        raise TransferlabError("--executor ray needs Ray: pip install 'transferlab[ray]' (or the ray package), "
                               "then run again") from None
    return ray


def connect(ray, address: str | None, show_output: bool) -> bool:
    """Connected to the cluster (``address``, else ``RAY_ADDRESS``, else a new Ray instance on this machine);
    ``True`` when this call connected (so the study disconnects at its end)."""
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    extra = {"include_dashboard": False} if target == "local" else {}
    check_reachable(target)
    try:
        ray.init(address=target, log_to_driver=show_output, logging_level=logging.WARNING, **extra)
    except ConnectionError as exc:
        raise TransferlabError(f"cannot reach the Ray cluster at {target} ({first_line(exc)}): start it (ray start "
                               f"--head on one machine) or give its address with --ray-address HOST:PORT or "
                               f"RAY_ADDRESS") from None
    except Exception as exc:
        if "auth" not in exc.__class__.__name__.lower() and "token" not in str(exc).lower():
            raise
        raise TransferlabError(f"the Ray cluster at {target} refused this driver ({first_line(exc)}): give the "
                               f"cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (docs/cluster.md)") from None
    return True


def check_reachable(target: str) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) nothing answers on is one line at once (Ray itself would retry
    for minutes)."""
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "local", "auto": Ray's own rules
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise TransferlabError(f"cannot reach the Ray cluster at {target} ({exc.strerror or exc}): start it (ray "
                               f"start --head on one machine) or give its address with --ray-address HOST:PORT or "
                               f"RAY_ADDRESS") from None


def read_token(path: str) -> dict:
    """Run on one node by the storage check: what it reads at ``path`` (``None``: nothing there)."""
    try:
        text = Path(path).read_text()
    except OSError:
        text = None
    return {"host": socket.gethostname(), "token": text}


def check_shared_storage(ray, study_dir: Path, nodes: list[dict]) -> None:
    """Every node in ``nodes`` reads back a random token the driver wrote into the study folder, or one line
    names the nodes that cannot and what to mount."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    path = study_dir / f".storage-check-{token[:12]}"
    path.write_text(token)
    probe = ray.remote(num_cpus=0, max_retries=1)(read_token)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
        str(path)) for n in nodes]
    try:
        answered, _ = ray.wait(refs, num_returns=len(refs), timeout=STORAGE_CHECK_S)
        answers = {ref: ray.get(ref) for ref in answered}
    finally:
        path.unlink(missing_ok=True)
    blind = [f"{n['NodeManagerAddress']} ({answers[r]['host'] if r in answers else 'no answer'})"
             for n, r in zip(nodes, refs) if r not in answers or answers[r]["token"] != token]
    if blind:
        raise TransferlabError(f"{len(blind)} of {len(nodes)} Ray node(s) cannot read the study folder {study_dir}: "
                               f"{', '.join(blind[:3])}; mount the same shared file system (e.g. NFS) at the same "
                               f"path on every node, or give an --output-dir on one")


def order(jobs: list[tuple[dict, object]]) -> tuple[list, dict[str, list]]:
    """(cells to hand out now, cells held until the first cell of their shared cache is done)."""
    ready, held = [], {}
    for cell, config in jobs:
        group = cache_group(cell, config)
        if group is not None and group in held:
            held[group].append((cell, config))
            continue
        if group is not None:
            held[group] = []
        ready.append((cell, config))
    return ready, held


def able_nodes(ray, cpus: int, what: str, memory_gib: float | None = None) -> list[dict]:
    """The live nodes of the cluster with the ``cpus`` CPUs (and ``memory_gib`` of Ray's memory resource) that
    ``what`` (a cell, a search worker) asks for; none is a one-line error (Ray would wait for one forever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= cpus]
    if not nodes:
        raise TransferlabError(f"no node of the Ray cluster has the {cpus} CPU(s) {what} asks for (--threads "
                               f"{cpus}): start nodes with more --num-cpus, or give fewer --threads")
    if memory_gib is not None:
        nodes = [n for n in nodes if n["Resources"].get("memory", 0) >= memory_bytes(memory_gib)]
        if not nodes:
            raise TransferlabError(f"no node of the Ray cluster has the {memory_gib:g} GiB of memory {what} asks "
                                   f"for (--memory {memory_gib:g}): give less, or start nodes with more "
                                   f"(ray start --memory BYTES)")
    return nodes


def memory_bytes(gib: float) -> int:
    return int(gib * 2 ** 30)


def slots_on(node: dict, cpus: int, memory_gib: float | None) -> int:
    """How many tasks of ``cpus`` CPUs (and ``memory_gib``) fit on ``node`` at once."""
    resources = node["Resources"]
    slots = int(resources["CPU"] // cpus)
    if memory_gib:
        slots = min(slots, int(resources.get("memory", 0) // memory_bytes(memory_gib)))
    return slots


class RayConnection:
    """A connection to a Ray cluster as a context, for a study's cells and a search's workers alike: ``open``
    connects, finds the nodes able to run one of them (``cpus`` CPUs each) and checks that every one sees the
    shared folder; leaving shuts Ray down when this process started the connection (``owned``)."""

    ray = None
    cpus = 1
    memory_gib: float | None = None
    owned = False
    gpus = 0.0

    def open(self, address: str | None, show_output: bool, what: str, folder: Path) -> list[dict]:
        self.owned = connect(self.ray, address, show_output)
        try:
            nodes = able_nodes(self.ray, self.cpus, what, self.memory_gib)
            check_shared_storage(self.ray, folder, nodes)
        except BaseException:
            self.__exit__()
            raise
        self.gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        return nodes

    def resources(self, config) -> dict:
        """The Ray options of one task (a cell, a search worker) running ``config``: its CPUs, a GPU when its
        device asks for one, and ``memory_gib`` when given."""
        options = {"num_cpus": self.cpus, "num_gpus": gpus_for(config, self.gpus)}
        if self.memory_gib:
            options["memory"] = memory_bytes(self.memory_gib)
        return options

    def __exit__(self, *exc) -> None:
        if self.owned:
            self.ray.shutdown()
            self.owned = False


class RayCells(RayConnection):
    """The cells as Ray tasks (see the module's help); ``slots``: how many run at once on the cluster."""

    def __init__(self, executor: Executor, study_dir: Path):
        self.executor, self.study_dir = executor, Path(study_dir).absolute()
        self.cpus, self.memory_gib = executor.threads or 1, executor.memory_gib
        self.ray = import_ray()
        self.slots = 1
        self.pending: dict = {}  # ObjectRef -> (cell, submission, cache group)
        self.seen: dict[str, int] = {}  # run_dir -> attempts already reported as started

    def __enter__(self) -> "RayCells":
        nodes = self.open(self.executor.address, self.executor.show_output, "a cell", self.study_dir)
        self.slots = sum(slots_on(n, self.cpus, self.memory_gib) for n in nodes)
        return self

    def run(self, jobs: list[tuple[dict, object]], recorder: Recorder) -> None:
        task = self.ray.remote(ray_cell)
        ready, held = order(jobs)
        try:
            for cell, config in ready:
                self.submit(task, cell, config, recorder)
            while self.pending:
                done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
                self.poll_started(recorder)
                for ref in done:
                    cell, submission, group = self.pending.pop(ref)
                    recorder.done(cell, self.outcome(ref, cell, submission))
                    for waiting, config in held.pop(group, []):
                        self.submit(task, waiting, config, recorder)
        except BaseException as exc:
            self.cancel(recorder, exc)
            raise

    def submit(self, task, cell: dict, config, recorder: Recorder) -> None:
        submission = secrets.token_hex(8)
        resources = self.resources(config)
        options = {**resources, "retry_exceptions": False, "max_retries": self.executor.max_retries,
                   "name": f"transferlab cell {cell['run_dir']}"}
        recorder.submitted(cell, resources)
        ref = task.options(**options).remote(str(self.study_dir), dict(cell), config, self.cpus, submission,
                                             forwarded_env(), os.getcwd(), self.executor.show_output)
        self.pending[ref] = (cell, submission, cache_group(cell, config))

    def poll_started(self, recorder: Recorder) -> None:
        """Cells whose (new) attempt has begun on a worker, told to the progress display."""
        for cell, submission, _ in self.pending.values():
            attempts = attempts_of(self.study_dir, cell["run_dir"], submission)
            if len(attempts) > self.seen.get(cell["run_dir"], 0):
                self.seen[cell["run_dir"]] = len(attempts)
                recorder.started(cell, attempts[-1].get("host"))

    def outcome(self, ref, cell: dict, submission: str) -> dict:
        """The task's outcome, or a failure naming why Ray gave up on it (a worker or node lost on every
        attempt); with the attempts the workers recorded."""
        try:
            outcome = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            outcome = {"status": FAILED, "error": ray_error(exc), "node": None}
        outcome["attempts"] = attempts_of(self.study_dir, cell["run_dir"], submission)
        return outcome

    def cancel(self, recorder: Recorder, exc: BaseException) -> None:
        """The study stops: every handed-out cell is cancelled (its worker killed) and recorded as failed."""
        for ref, (cell, _, _) in self.pending.items():
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            recorder.abandoned(cell, f"cancelled: the study stopped ({exc.__class__.__name__})")
        self.pending.clear()
