"""One check_<exercise>(student_object) per exercise of the series.

Each check prints one line when everything passed, and otherwise raises an AssertionError
whose message names the case, the expected and the received value, and a hint. Checks are
deterministic, take well under 2 s on a CPU and write nothing to stderr.

The checks of each notebook live in their own module (nb01_loss.py, ...); they are all
importable from here: `tutor_lib.checks.check_token_nll(token_nll)`.
"""

from . import nb01_loss, nb02_data, nb03_model, nb04_stage0, nb05_stage1, nb06_stage2, nb07_experiments, nb08_multiturn
from ._common import CheckError, not_reference, verify_integrity
from .nb01_loss import *  # noqa: F403
from .nb02_data import *  # noqa: F403
from .nb03_model import *  # noqa: F403
from .nb04_stage0 import *  # noqa: F403
from .nb05_stage1 import *  # noqa: F403
from .nb06_stage2 import *  # noqa: F403
from .nb07_experiments import *  # noqa: F403
from .nb08_multiturn import *  # noqa: F403

_MODULES = (nb01_loss, nb02_data, nb03_model, nb04_stage0, nb05_stage1, nb06_stage2, nb07_experiments, nb08_multiturn)
__all__ = ["CheckError", "not_reference", "verify_integrity"] + [n for m in _MODULES for n in m.__all__]
