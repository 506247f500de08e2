"""One check_<exercise>(student_object) per exercise of the series.

Each check prints one line when everything passed, and otherwise raises an AssertionError
whose message names the case, the expected and the received value, and a hint. Checks are
deterministic, take well under 2 s on a CPU and write nothing to stderr.

The checks of each notebook live in their own module (nb01_loss.py, ...); they are all
importable from here: `tutor_lib.checks.check_token_nll(token_nll)`.

The hidden tests of the notebooks use the helpers exported here too: `fail`, `call`,
`expect_tensor`, `expect_close`, `not_reference`, `verify_integrity`, `silenced`,
`reference_batches`, and `trusted` (the torch functions bound before any student code ran).
The modules whose names start with `_` are the checks' own and may change.
"""

from . import (
    nb01_loss,
    nb02_data,
    nb03_model,
    nb04_stage0,
    nb05_stage1,
    nb06_stage2,
    nb07_experiments,
    nb08_multiturn,
    nb09_inside,
    trusted,
)
from ._common import CheckError, call, expect_close, expect_tensor, fail, not_reference, verify_integrity
from ._stages import reference_batches, silenced
from .nb01_loss import *  # noqa: F403
from .nb02_data import *  # noqa: F403
from .nb03_model import *  # noqa: F403
from .nb04_stage0 import *  # noqa: F403
from .nb05_stage1 import *  # noqa: F403
from .nb06_stage2 import *  # noqa: F403
from .nb07_experiments import *  # noqa: F403
from .nb08_multiturn import *  # noqa: F403
from .nb09_inside import *  # noqa: F403

_MODULES = (nb01_loss, nb02_data, nb03_model, nb04_stage0, nb05_stage1, nb06_stage2, nb07_experiments, nb08_multiturn,
            nb09_inside)
__all__ = ["CheckError", "call", "expect_close", "expect_tensor", "fail", "not_reference", "reference_batches", "silenced",
           "trusted", "verify_integrity"]
__all__ += [n for m in _MODULES for n in m.__all__]
