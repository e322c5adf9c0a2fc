"""atft-kedro file for ensuring the package is executable
as `atft-kedro` and `python -m atft_kedro`
"""
import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args, **kwargs) -> Any:
    from atft_kedro.kedro_init import pipelines_spelling, quiet_plugin_warnings

    quiet_plugin_warnings()  # what the kedro CLI runs first (kedro.init), for `python -m atft_kedro` and torchrun
    sys.argv[1:] = pipelines_spelling(sys.argv[1:])  # the command line is the run command's own
    package_name = Path(__file__).parent.name
    configure_project(package_name)

    interactive = hasattr(sys, 'ps1')
    kwargs["standalone_mode"] = not interactive

    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
