"""Project hooks."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path

import click
from kedro.framework.hooks import hook_impl
from kedro.io import DatasetError, MemoryDataset

from atft_kedro.checks import error_line
from atft_kedro.data.jquants import JQuantsCredentials
from atft_kedro.memory import Memory, memory

log = logging.getLogger(__name__)


class JQuantsCredentialsHook:
    """Hands the ``jquants`` entry of conf/local/credentials.yml (or the JQUANTS_* environment
    variables) to the data_engineering pipeline as the in-memory dataset ``jquants_credentials``.
    A catalog entry with ``credentials: jquants`` would make every run fail when that entry is
    absent, and most runs (synthetic, files) need none. The object's repr hides the secrets, so
    Kedro's logs never show them."""

    @hook_impl
    def after_catalog_created(self, catalog, conf_creds, **kwargs) -> None:
        credentials = JQuantsCredentials.from_sources((conf_creds or {}).get("jquants"))
        catalog["jquants_credentials"] = MemoryDataset(credentials, copy_mode="assign")


class OneLineErrorHook:
    """When a node stops on one of the project's own errors (bad raw data, a missing checkpoint,
    J-Quants), says what is wrong on one line of stderr before Kedro's traceback: the message
    already names what to fix, and the traceback is for the code, not for the data. (Not through
    logging: the rich handler wraps long lines at the console's width.)"""

    @hook_impl
    def on_node_error(self, error: Exception, node, **kwargs) -> None:
        if type(error).__module__.startswith("atft_kedro."):
            click.secho(f"Error in node {node.name}: {one_line(error)}", fg="red", bold=True, err=True)

    @hook_impl
    def on_pipeline_error(self, error: Exception, catalog, **kwargs) -> None:
        problem = unreadable_artifact(error, catalog, project_pipelines())
        if problem:
            click.secho(f"Error: {problem}", fg="red", bold=True, err=True)


def one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def unreadable_artifact(error: Exception, catalog, registered: dict) -> str | None:
    """Where a run stopped loading a dataset a pipeline of ``registered`` writes (a file damaged
    or edited since, or of another version of the project): which file, why, and the command that
    writes it again -> the message, or None for any other error. (The load fails in Kedro's
    runner, before the node that reads it, so ``on_node_error`` does not see it.)"""
    found = re.match(r"(\S+): Failed while loading data from dataset", str(error)) if isinstance(error, DatasetError) else None
    maker = next((name for name in DATA_ORDER if found and found[1] in registered[name].all_outputs()), None)
    if maker is None:
        return None
    path = getattr(catalog.get(found[1]), "_filepath", None) if found[1] in catalog else None
    cause = error
    while cause.__cause__ is not None:  # Kedro's two DatasetErrors around what the reader said
        cause = cause.__cause__
    return (f"cannot read {found[1]}{f' ({path})' if path else ''}: {error_line(cause)}. {maker} writes it: "
            f"`kedro run --pipelines {maker}` writes it again (or run everything with `kedro run`), then repeat this command.")


class MissingInputsError(click.ClickException):
    """A run of part of the project reads datasets that an earlier pipeline writes and that are not
    there yet. A ClickException: the command line prints the message, not a traceback."""


# the project's pipelines in the order a full run makes their data: the order a command names them in
DATA_ORDER = ("data_engineering", "graph_construction", "training", "evaluation", "inference")


class MissingInputsHook:
    """Before a run of part of the project (``--pipelines training``, ``--from-nodes ...``): every
    dataset it reads that another pipeline writes must be there. If one is not, the run stops
    before any node (and before kedro-mlflow opens a run: ``tryfirst``) and says which are missing
    and which pipelines make them, instead of a traceback about a missing file from the first node
    that loads one. Datasets no node writes (the checkpoint store, credentials) are the nodes' own
    business."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, pipeline, catalog, **kwargs) -> None:
        problem = missing_inputs(pipeline, catalog, project_pipelines())
        if problem:
            raise MissingInputsError(problem)


class ProjectBusyError(click.ClickException):
    """Another run is using this project's data. A ClickException: the command line prints the message, not a traceback."""


class OneRunAtATimeHook:
    """One `kedro run` at a time in a project. Two at once write the same ``data/``: a second run's
    data_engineering replaces what the first one's training reads, their checkpoints and model.pt
    cross, and the metrics are neither run's. A run holds an exclusive lock on ``data/.run.lock``
    while it runs (the system lets go of it when the process ends, however it ends); a second run
    stops before any node (and before kedro-mlflow opens a run) and says which run holds it. Under
    torchrun the ranks are one run: rank 0 holds the lock. Registered before the parameter and
    input checks, so that they, run first, stop a bad command without waiting for the lock."""

    def __init__(self):
        self._held = None

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, **kwargs) -> None:
        if torchrun_rank() == 0:
            self._held = hold_project_lock(Path(run_params["project_path"]) / "data" / ".run.lock")

    @hook_impl
    def after_pipeline_run(self, **kwargs) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self, **kwargs) -> None:
        self._release()

    def _release(self) -> None:
        if self._held is not None:
            self._held.close()  # closing the file lets go of its lock
            self._held = None


def hold_project_lock(path: Path):
    """Take the exclusive lock on ``path`` and write who holds it -> the open file (the lock lasts
    while it is open), or None where the system has no ``flock`` (not POSIX). Raises
    ``ProjectBusyError`` naming the holder when another process holds it."""
    try:
        import fcntl
    except ImportError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    held = open(path, "a+")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.seek(0)
        holder = held.read().strip() or "a process that has not said which"
        held.close()
        raise ProjectBusyError(
            f"another run is using this project's data ({holder}), and two runs at once would write over each other's "
            f"artifacts. Wait for it to end, or run in a copy of the project (seeds side by side: experiments/seeds.py)."
        ) from None
    held.seek(0)
    held.truncate()
    held.write(f"process {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}")
    held.flush()
    return held


class ParametersError(click.ClickException):
    """Parameters the run would ignore or refuse. A ClickException: the command line prints the message, not a traceback."""


class ParametersHook:
    """Before any node: every parameter (conf/base's, conf/local's and ``--params``) must be one
    the project reads, and the groups nodes take as dicts must hold values their configs accept. A
    misspelt key (``--params evaluation.blnd=true``) would otherwise be ignored without a word, and
    a bad evaluation value met only after training. The groups nodes take as config dataclasses
    Kedro checks itself, where the run reads them (its error a ParametersError too:
    atft_kedro/context.py)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, catalog, **kwargs) -> None:
        from atft_kedro.pipelines.typed import parameter_problems, parameters_read

        if "parameters" not in catalog:
            return
        problem = parameter_problems(catalog.load("parameters"), parameters_read(project_pipelines().values()))
        if problem:
            raise ParametersError(problem)


def project_pipelines() -> dict:
    """Every pipeline of ``DATA_ORDER`` by name, built from its package (during a run Kedro's
    registry holds only the pipelines the command names)."""
    import importlib

    return {name: importlib.import_module(f"atft_kedro.pipelines.{name}").create_pipeline() for name in DATA_ORDER}


def missing_inputs(pipeline, catalog, registered: dict) -> str | None:
    """What ``pipeline`` reads from datasets a pipeline of ``registered`` ({name: pipeline} for the
    names of ``DATA_ORDER``) writes that ``catalog`` does not hold yet, and the command that makes
    them -> the message, or None when nothing is missing."""
    makers = {}
    for name in DATA_ORDER:
        for dataset in registered[name].all_outputs():
            makers.setdefault(dataset, name)
    missing = [d for d in sorted(pipeline.inputs()) if d in makers and not catalog.exists(d)]
    if not missing:
        return None
    needed = sorted({makers[d] for d in missing}, key=DATA_ORDER.index)
    listed = "; ".join(f"from {name}: {', '.join(d for d in missing if makers[d] == name)}" for name in needed)
    return (f"this run reads datasets that are not there yet ({listed}). Make them first with "
            f"`kedro run --pipelines {','.join(needed)}` (or run everything with `kedro run`), then repeat this command.")


class TrackingHook:
    """Logs into the MLflow run that kedro-mlflow opens for every ``kedro run`` (its own hook logs the
    parameters): each phase's per-epoch history, ``metrics.json`` flattened, the report and the
    plots, and the model (see ``atft_kedro.tracking``)."""

    def __init__(self):
        self._logged: set[str] = set()
        self._catalog = None

    @hook_impl
    def after_catalog_created(self, catalog, **kwargs) -> None:
        self._catalog = catalog

    @hook_impl
    def before_pipeline_run(self, **kwargs) -> None:
        self._logged = set()

    @hook_impl
    def before_node_run(self, inputs: dict, **kwargs) -> None:
        """The typed parameters a node takes (Kedro built them from dicts, which kedro-mlflow would
        have logged field by field) logged as flat parameters, once per run."""
        from atft_kedro import tracking

        for name, value in inputs.items():
            if name.startswith("params:") and dataclasses.is_dataclass(value) and name not in self._logged:
                tracking.log_config(name.removeprefix("params:"), value)
                self._logged.add(name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data, **kwargs) -> None:
        from atft_kedro import tracking

        if dataset_name == "training_history":
            tracking.log_training_history(data)
        elif dataset_name == "metrics":
            tracking.log_metrics_document(data)
        elif dataset_name == "evaluation_report":
            tracking.log_text(data, "evaluation_report.md")
        elif dataset_name.endswith("_plot"):
            tracking.log_figure(data, f"{dataset_name.removesuffix('_plot')}.png", self._saved_file(dataset_name))
        elif dataset_name == "model":
            tracking.log_model(data)

    def _saved_file(self, dataset_name: str) -> Path | None:
        """The local file the catalog just wrote ``dataset_name`` to; None where it is not one plain
        local file (another protocol, a versioned dataset)."""
        dataset = self._catalog.get(dataset_name) if self._catalog is not None else None
        path = getattr(dataset, "_filepath", None)
        if path is None or getattr(dataset, "_protocol", "file") != "file" or getattr(dataset, "_version", None) is not None:
            return None
        return Path(path) if Path(path).is_file() else None


class SummaryHook:
    """At the end of a run that evaluated the model, the headline numbers on the terminal (every
    scorer's test RankIC by horizon and the model against the best baseline) and where the report
    is. Printed, not logged: the rich handler wraps a table's lines at the console's width."""

    @hook_impl
    def after_pipeline_run(self, pipeline, catalog, **kwargs) -> None:
        from atft_kedro.evaluation.report import console_summary

        if "metrics" in pipeline.all_outputs() and torchrun_rank() == 0:
            report = getattr(catalog.get("evaluation_report"), "_filepath", "data/08_reporting/evaluation_report.md")
            click.echo(f"\n{console_summary(catalog.load('metrics'))}\nThe report, with every metric and the plots beside it: {report}")


SOURCE = Path(__file__).parent.parent  # the folder of the project's packages (src/)


def running_at(thread: int, code: Path = SOURCE, depth: int = 3) -> str | None:
    """Where thread ``thread`` is now in the code under ``code``: its innermost ``depth`` frames
    there, innermost first, as "path:line function" joined by " < " (path from ``code``); None
    where none of its frames is, where the thread is in a hook of this module (not in a node's
    code), or where it has ended. Read from another thread, this is the line the thread runs, or
    the one that called into C code (torch, polars) and waits on it."""
    frame, places, root = sys._current_frames().get(thread), [], f"{code}{os.sep}"
    while frame is not None:
        if frame.f_code.co_filename == __file__:
            return None
        if frame.f_code.co_filename.startswith(root) and len(places) < depth:
            places.append(f"{frame.f_code.co_filename.removeprefix(root)}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return " < ".join(places) or None


class NodeCostHook:
    """Each node's wall time (its function's: Kedro loads its inputs before and saves its outputs
    after) and its peak resident memory, logged when it ends, and at the end of the run one line
    per node, the costliest first: where a large market's time and memory go.

    The peak is exact for a node that raised the process's high-water mark (``VmHWM``: the run's
    peak so far was set in it); for the others it is the most a watcher saw, sampling the resident
    set twice a second (said "about"). The mark is never reset, so ``/usr/bin/time`` still gives the
    run's own peak. Each line also gives the most the watcher saw of the process's own memory
    (not pages of mapped files, ``Memory.anon``): the resident set also counts the pages read of
    the memory-mapped arrays and graphs, which the system drops and reads again when memory runs
    short, so the own part is what a machine must hold, and the line says where in the project's
    code (``code``: its source folder) the node was when its own memory was highest (``running_at``).
    While a node runs, the watcher also logs each whole ``step`` of memory the node passes, and
    where, so that the line falls among the node's own log lines where the memory is taken. Linux
    (``/proc/self/status``); elsewhere only times. Meant for the sequential runner, where nodes do
    not overlap."""

    def __init__(self, step: float = 2e9, every: float = 0.5, code: Path = SOURCE):
        self._started: dict[str, tuple[float, int | None]] = {}
        self._costs: list[NodeCost] = []
        self._step, self._every, self._code = step, every, code
        self._watch: _Watch | None = None

    @hook_impl
    def before_pipeline_run(self, **kwargs) -> None:
        self._started, self._costs = {}, []

    @hook_impl
    def before_node_run(self, node, **kwargs) -> None:
        self._stop_watch()
        now = memory()
        self._started[node.name] = (time.perf_counter(), now and now.peak)
        if now is not None:
            self._watch = _Watch(node.name, self._step, self._every, self._code)

    @hook_impl
    def after_node_run(self, node, **kwargs) -> None:
        seen, where = self._stop_watch()
        began, mark = self._started.pop(node.name, (time.perf_counter(), None))
        now = memory()
        if now is None or mark is None:
            cost = NodeCost(node.name, time.perf_counter() - began)
        else:  # the node set the run's high-water mark: its peak, exactly; else the most seen
            exact = now.peak > mark
            where = where if seen.anon >= now.anon else "its end"
            cost = NodeCost(node.name, time.perf_counter() - began, now.peak if exact else max(seen.rss, now.rss), exact, max(seen.anon, now.anon), where)
        self._costs.append(cost)
        log.info("node %s: %s", node.name, cost)

    @hook_impl
    def on_node_error(self, **kwargs) -> None:
        self._stop_watch()

    @hook_impl
    def after_pipeline_run(self, **kwargs) -> None:
        if len(self._costs) > 1:
            costliest = sorted(self._costs, key=lambda c: -c.seconds)  # each without where: that is in its own line
            log.info("where the run's time went, per node: %s", "; ".join(f"{c.name} {dataclasses.replace(c, where=None)}" for c in costliest))

    def _stop_watch(self) -> tuple[Memory, str | None]:
        """-> the most the watcher saw and where the node was at its most own memory."""
        watch, self._watch = self._watch, None
        return (watch.stop(), watch.where) if watch is not None else (Memory(0, 0, 0), None)


@dataclasses.dataclass(frozen=True)
class NodeCost:
    """A node's wall time, its peak resident memory (``exact``: the run's high-water mark, set in
    it; else the most sampled; None off Linux), the most sampled of its own (``Memory.anon``) and
    where the node's code was then (``running_at``; "its end"; None: not in the project's code)."""

    name: str
    seconds: float
    peak: int | None = None
    exact: bool = False
    anon: int = 0
    where: str | None = None

    def __str__(self) -> str:
        minutes, rest = divmod(self.seconds, 60)
        took = f"{int(minutes)} min {rest:.0f} s" if minutes else f"{rest:.1f} s"
        if self.peak is None:
            return took
        own = f"{self.anon / 1e9:.2f} GB of it the process's own, the rest mapped files{f'; its own highest at {self.where}' if self.where else ''}"
        return f"{took}, peak memory {self.peak / 1e9:.2f} GB (the run's peak so far; at most {own})" if self.exact else \
            f"{took}, peak memory about {self.peak / 1e9:.2f} GB (at most {own})"  # fmt: skip


class _Watch:
    """A thread that samples the resident set every ``every`` seconds until ``stop`` (which returns
    the most it saw of the resident set and of its own part, ``Memory``'s ``rss`` and ``anon``),
    keeps where in ``code`` the node's thread (the one that made the watch) was at the most of its
    own (``where``), and logs each whole ``step`` the node's memory passes."""

    def __init__(self, node: str, step: float, every: float, code: Path = SOURCE):
        self.node, self.step, self.every, self.most, self.most_anon = node, step, every, 0, 0
        self.where: str | None = None
        self._code, self._thread_id = code, threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="node-memory")
        self._thread.start()

    def _run(self) -> None:
        passed = None
        while True:
            now = memory()
            if now is None:
                return
            self.most = max(self.most, now.rss)
            if now.anon > self.most_anon:
                self.most_anon, self.where = now.anon, running_at(self._thread_id, self._code)
            steps = int(self.most // self.step)
            if passed is not None and steps > passed:
                at = running_at(self._thread_id, self._code)
                log.info("memory: node %s passed %.0f GB (now %.1f GB, %.1f GB of it its own)%s", self.node, steps * self.step / 1e9,
                         now.rss / 1e9, now.anon / 1e9, f", at {at}" if at else "")  # fmt: skip
            passed = steps
            if self._stop.wait(self.every):
                return

    def stop(self) -> Memory:
        self._stop.set()
        self._thread.join()
        return Memory(self.most, 0, self.most_anon)


class DistributedRanksHook:
    """Under ``torchrun`` every rank runs the same pipeline, and rank 0 alone writes what it
    produces: on the other ranks the pipeline's outputs stay in memory (two processes never write
    one file) and only warnings are logged. Checkpoints are rank 0's too (the training loop). One
    process (no torchrun) is untouched."""

    @hook_impl
    def after_context_created(self, context) -> None:
        if torchrun_rank() > 0:
            for name in ("", "kedro", "atft_kedro", "py.warnings"):
                logging.getLogger(name).setLevel(logging.WARNING)

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        if torchrun_rank() > 0:
            quiet = logging.getLogger("kedro.io.data_catalog")  # it warns on every replaced dataset
            level, quiet.level = quiet.level, logging.ERROR
            try:
                for name in pipeline.all_outputs():
                    catalog[name] = MemoryDataset(copy_mode="assign")
            finally:
                quiet.setLevel(level)


def torchrun_rank() -> int:
    """This process's rank under torchrun (0 without it), read without importing torch."""
    return int(os.environ.get("RANK", "0"))
