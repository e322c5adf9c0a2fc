"""Commands the tests start as a user would (`kedro run`, a script, `python -m`), each in a process
of its own, without paying their imports each time.

A `kedro run` spends 7-10 s on this machine before its first node: Python imports Kedro's CLI with
kedro-mlflow's (and so MLflow), then the pipelines (torch among them). The end-to-end tests start
about a dozen such commands. Here each is a child of one `multiprocessing` fork server that
imported those modules once and ran nothing else: the child changes to the command's directory,
takes its environment and command line, and runs it with stdout and stderr redirected to files.
Only what a module does when it is imported is shared, so a command starts as a fresh process
would, but for warnings raised at import (printed once, by the server): ``kedro_run(...,
fresh=True)`` starts a real ``kedro`` executable where a test reads those.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PRELOAD = ["kedro.framework.cli.cli", "kedro_mlflow.framework.cli.cli", "kedro_mlflow.framework.hooks", "atft_kedro.settings",
           "atft_kedro.pipelines.in_memory", "atft_kedro.tuning"] + [
    f"atft_kedro.pipelines.{name}.pipeline" for name in ("data_engineering", "graph_construction", "training", "evaluation", "inference")
] + [  # what a run imports later, in its nodes and hooks (`python -X importtime`): 3.5 s a run here
    "torch._inductor.config",  # by torch.use_deterministic_algorithms, in safe mode's training
    "mlflow.store.tracking.sqlalchemy_store", "scipy.stats", "lightgbm", "torch.fx.experimental.symbolic_shapes",
]  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]

_context = None


def copy_project(root: Path) -> Path:
    """The project's code and configuration in ``root``, without local settings or data."""
    for name in ("pyproject.toml", "conf", "notebooks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.rmtree(root / "conf" / "local", ignore_errors=True)
    (root / "conf" / "local").mkdir()
    return root


def _fork_server():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _entry(argv: list[str]):
    """What ``argv`` runs: ``kedro ...``, ``python -m module ...`` or ``python script ...``."""
    if argv[0] == "kedro":
        from kedro.framework.cli import main

        return argv, main
    if argv[1] == "-m":
        return [argv[2], *argv[3:]], lambda: runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    sys.path.insert(0, str(Path(argv[1]).resolve().parent))  # as `python script` puts the script's folder first
    return argv[1:], lambda: runpy.run_path(argv[1], run_name="__main__")


def _child(cwd: str, argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    """The body of one command in a child of the fork server (its exit status is the command's)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    with open(out, "w") as o, open(err, "w") as e:
        os.dup2(o.fileno(), 1)
        os.dup2(e.fileno(), 2)
    sys.argv, command = _entry(argv)
    try:
        command()
    except SystemExit:
        raise
    except BaseException:  # as the interpreter would end the command: the traceback through sys.excepthook, status 1
        sys.excepthook(*sys.exc_info())
        raise SystemExit(1) from None
    finally:
        logging.shutdown()  # the child leaves by os._exit, which runs no atexit: close the log files' handlers here
        sys.stdout.flush()
        sys.stderr.flush()


class Command:
    """``argv`` started in ``cwd`` with ``env`` (this process's environment, by default): a child of
    the fork server, or with ``fresh`` (and where Python has no fork server) a process of its own."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None, fresh: bool = False):
        env = dict(os.environ if env is None else env)
        self.argv, self._tmp = argv, tempfile.TemporaryDirectory()
        self._out, self._err = Path(self._tmp.name, "stdout"), Path(self._tmp.name, "stderr")
        self._child = self._process = None
        if fresh or "forkserver" not in multiprocessing.get_all_start_methods():
            command = [str(Path(sys.executable).with_name("kedro")), *argv[1:]] if argv[0] == "kedro" else argv
            with open(self._out, "w") as out, open(self._err, "w") as err:
                self._process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        else:
            self._child = _fork_server().Process(target=_child, args=(str(cwd), argv, env, str(self._out), str(self._err)))
            self._child.start()

    def wait(self, timeout: float = 900) -> subprocess.CompletedProcess:
        """Its exit status, stdout and stderr, as ``subprocess.run`` would give them."""
        try:
            status = self._process.wait(timeout) if self._process else self._join(timeout)
            return subprocess.CompletedProcess(self.argv, status, self._out.read_text(), self._err.read_text())
        except subprocess.TimeoutExpired:
            if self._process:
                self._process.kill()
                self._process.wait()
            else:
                self._child.kill()
                self._child.join()
            raise subprocess.TimeoutExpired(self.argv, timeout, self._out.read_text(), self._err.read_text()) from None
        finally:
            self._tmp.cleanup()

    def _join(self, timeout: float) -> int:
        self._child.join(timeout)
        if self._child.exitcode is None:
            raise subprocess.TimeoutExpired(self.argv, timeout)
        return self._child.exitcode


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900, fresh: bool = False) -> subprocess.CompletedProcess:
    return Command(argv, cwd, env, fresh).wait(timeout)


def kedro_run(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900, fresh: bool = False) -> subprocess.CompletedProcess:
    """``kedro run *args`` in ``project`` with ``env`` (this process's environment with Kedro's
    telemetry off, by default)."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"} if env is None else env
    return run(["kedro", "run", *args], project, env, timeout, fresh)
