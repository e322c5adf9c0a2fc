"""The project's Kedro context (``CONTEXT_CLASS`` in settings.py): Kedro's own, except that a
parameter value a node's config refuses (``--params training.lr=-1``) stops the command with that
message alone. Kedro checks the groups nodes take as config dataclasses (``training``) when the run
first reads the parameters, before any hook, and its error came with a page of traceback through
Kedro's and click's frames; as a ``ParametersError`` the command line prints the message."""

from kedro.framework.context import KedroContext
from kedro.validation.exceptions import ParameterValidationError

from atft_kedro.hooks import ParametersError


class ProjectContext(KedroContext):
    @property
    def params(self) -> dict:
        try:
            return super().params
        except ParameterValidationError as err:
            raise ParametersError(str(err)) from None
