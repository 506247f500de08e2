"""`tutor setup`: make a student's environment ready and check it, without training anything.

It hides nbgrader's instructor tools from JupyterLab in this environment (the Formgrader, the
"Create Assignment" panel, the course and assignment lists, and the Nbgrader menu that opens
them), keeps the Validate button, and then checks, in a few seconds, everything the notebooks
need: PyTorch, the device and threads the notebooks will use, the shipped stage-0 weights with one
forward pass, JupyterLab, nbgrader's Validate, and the course folder. Instructors install the
`grading` extra in their own environment and never run this.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# nbgrader 0.9's JupyterLab plugins and server extensions that only an instructor needs. Validate
# (@jupyter/nbgrader:validate-assignment and nbgrader.server_extensions.validate_assignment) stays.
INSTRUCTOR_LAB_PLUGINS = (
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:course-list",
    "@jupyter/nbgrader:assignment-list",
    "@jupyter/nbgrader:menu",  # its only entries open the three tools above
)
INSTRUCTOR_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.assignment_list",
)
VALIDATE_LAB_PLUGIN = "@jupyter/nbgrader:validate-assignment"
VALIDATE_SERVER_EXTENSION = "nbgrader.server_extensions.validate_assignment"
SERVER_CONFIG_NAME = "zz-tutor-student.json"  # read after nbgrader.json, so it wins


def environment_config_dir() -> Path:
    """Jupyter's configuration folder of this Python environment (what --sys-prefix / --level=sys_prefix write)."""
    return Path(sys.prefix) / "etc" / "jupyter"


def _update_json(path: Path, update) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    update(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def hide_instructor_tools(config_dir: Path, hide: bool = True) -> None:
    """Disable (hide=False: enable again) the instructor parts of nbgrader in config_dir, as
    `jupyter labextension disable --level=sys_prefix` and `jupyter server extension disable --sys-prefix` do."""
    def lab(data: dict) -> None:
        disabled = data.setdefault("disabledExtensions", {})
        for plugin in INSTRUCTOR_LAB_PLUGINS:
            if hide:
                disabled[plugin] = True
            else:
                disabled.pop(plugin, None)

    def server(data: dict) -> None:
        extensions = data.setdefault("ServerApp", {}).setdefault("jpserver_extensions", {})
        for name in INSTRUCTOR_SERVER_EXTENSIONS:
            extensions[name] = not hide

    _update_json(config_dir / "labconfig" / "page_config.json", lab)
    _update_json(config_dir / "jupyter_server_config.d" / SERVER_CONFIG_NAME, server)


def jupyter_state() -> tuple[dict[str, bool], set[str]]:
    """(server extensions -> enabled, disabled JupyterLab plugins) as Jupyter will read them here."""
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    paths = jupyter_config_path()
    server = ExtensionConfigManager(read_config_path=paths).get_jpserver_extensions()
    disabled: set[str] = set()
    for folder in reversed(paths):  # lowest precedence first, as JupyterLab merges them
        page = Path(folder) / "labconfig" / "page_config.json"
        if page.exists():
            for name, off in json.loads(page.read_text()).get("disabledExtensions", {}).items():
                (disabled.add if off else disabled.discard)(name)
    return server, disabled


def _check(ok: bool, text: str, fix: str = "") -> bool:
    print(f"  {'✓' if ok else '✗'} {text}" + ("" if ok or not fix else f"\n      fix: {fix}"), flush=True)
    return ok


def check_environment(course: Path) -> bool:
    """Print one line per requirement of the notebooks (✓ or ✗ with a fix); True when all are met."""
    import torch

    from .data import make_dataset
    from .pretrain import pretrained_model
    from .runtime import cpu_threads_wanted, pick_device

    ok = _check(sys.version_info >= (3, 10), f"Python {sys.version.split()[0]}", "install Python 3.10 or newer")
    device = pick_device()
    ok &= _check(True, f"PyTorch {torch.__version__} on {device.type}; the notebooks use {cpu_threads_wanted()} "
                       "CPU thread(s) (set TUTOR_THREADS to change)")
    start = time.perf_counter()
    try:
        torch.manual_seed(0)
        model = pretrained_model(progress=False, verbose=False).to(device).eval()
        data = make_dataset(2, seed=0)
        with torch.no_grad():
            logits = model(data.images.to(device), torch.ones(2, 3, dtype=torch.long, device=device))
        ok &= _check(tuple(logits.shape) == (2, model.num_patches + 3, model.language_model.output_head.out_features),
                     f"stage-0 weights loaded and one forward pass run in {time.perf_counter() - start:.1f} s")
    except Exception as error:  # any failure here is what the student must see, in one line
        ok &= _check(False, f"stage-0 weights and a forward pass: {type(error).__name__}: {error}",
                     "reinstall: python3 tasks.py setup")
    try:
        import jupyterlab
        ok &= _check(True, f"JupyterLab {jupyterlab.__version__}")
    except ImportError:
        ok &= _check(False, "JupyterLab is not installed", 'pip install -e ".[notebooks]"')
    try:
        import nbgrader
    except ImportError:
        ok &= _check(False, "nbgrader is not installed, so there is no Validate button", 'pip install -e ".[notebooks]"')
    else:
        server, disabled = jupyter_state()
        ok &= _check(server.get(VALIDATE_SERVER_EXTENSION, False) and VALIDATE_LAB_PLUGIN not in disabled,
                     f"nbgrader {nbgrader.__version__}: the Validate button is enabled",
                     f"jupyter server extension enable --sys-prefix {VALIDATE_SERVER_EXTENSION}")
        shown = [n for n in INSTRUCTOR_SERVER_EXTENSIONS if server.get(n, False)]
        shown += [n for n in INSTRUCTOR_LAB_PLUGINS if n not in disabled]
        _check(not shown, "nbgrader's instructor tools are hidden" if not shown
               else f"nbgrader's instructor tools are shown: {', '.join(shown)} (fine for an instructor)")
    config = course / "nbgrader_config.py"
    ok &= _check(config.exists() and (course / "notebooks").is_dir(),
                 f"course folder {course} (nbgrader_config.py and notebooks/)",
                 "run this in the course folder, the one with nbgrader_config.py: Validate reads its limits there")
    return bool(ok)


def setup_student(course: Path, keep_instructor_tools: bool = False, config_dir: Path | None = None) -> int:
    """`tutor setup`: hide the instructor tools (unless asked not to), check everything; 0 when ready, 1 if not."""
    config_dir = config_dir or environment_config_dir()
    in_own_environment = sys.prefix != sys.base_prefix or os.environ.get("CONDA_PREFIX") == sys.prefix
    if keep_instructor_tools:
        hide_instructor_tools(config_dir, hide=False)
        print(f"nbgrader's instructor tools are shown in this environment ({config_dir})")
    elif in_own_environment or config_dir != environment_config_dir():
        hide_instructor_tools(config_dir)
        print(f"Hid nbgrader's instructor tools (Formgrader, Create Assignment, course and assignment lists) "
              f"in this environment's JupyterLab ({config_dir}); the Validate button stays")
    else:
        print("Not a virtual environment: left Jupyter's configuration alone (the instructor tools stay visible)")
    print("Checking what the notebooks need (no training):")
    ready = check_environment(course)
    if ready:
        print(f"\nReady. Start JupyterLab from the course folder: {Path(sys.prefix) / 'bin' / 'jupyter'} lab notebooks/")
    else:
        print("\nNot ready: fix the lines marked ✗ above, then run this again.")
    return 0 if ready else 1
