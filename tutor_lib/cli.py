"""The `tutor` command (also `python -m tutor_lib`).

    tutor setup [--keep-instructor-tools]              (students: ready JupyterLab and check, no training)
    tutor run [--quick] [--from-scratch] [--device cpu] [--seed 42] [--stage1-epochs 30] [--stage2-epochs 50] [--output outputs]
              [--nproc N]
    tutor pretrain [--seed 42] [--device cpu] [--output FOLDER]
    tutor release [ASSIGNMENT ...] [--no-db] [--db URL]
    tutor collect PATH [--pattern REGEX] [--zip-timezone ZONE]
    tutor grade [--student S] [--assignment A] [--workers N] [--db URL] [--timeout SECONDS]
    tutor report [--db URL] [--output FOLDER]
"""

from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2, not a usage dump."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="train both stages on the shapes data and write figures and a report")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: CUDA, then MPS, then CPU)")
    p.add_argument("--seed", type=_non_negative_int, default=42, help="random seed (default 42)")
    p.add_argument("--stage1-epochs", type=_non_negative_int, default=None, help="default 30 (2 with --quick)")
    p.add_argument("--stage2-epochs", type=_non_negative_int, default=None, help="default 50 (3 with --quick)")
    p.add_argument("--output", default="outputs", help="folder for figures and report.json (default outputs/)")
    p.add_argument("--quick", action="store_true", help="a few-second smoke run on a small dataset (also when TUTOR_QUICK=1)")
    p.add_argument("--from-scratch", action="store_true",
                   help="skip stage 0: a random vision encoder and language model, as in the seed notebook")
    p.add_argument("--stage0-seed", type=_non_negative_int, default=42,
                   help="seed of the pretrained parts (default 42, shipped with the package; others are built once)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--nproc", type=_positive_int, default=1,
                   help="train stages 1 and 2 in N processes under torchrun with DistributedDataParallel "
                        "(gloo on the CPU, NCCL on GPUs; the global batch stays 32)")
    p.set_defaults(handler=_run)


def _torchrun(args: argparse.Namespace) -> int:
    """Start this `tutor run` again in args.nproc processes under torchrun; each joins one process group."""
    import subprocess

    # No --nproc for the workers (torchrun would take it for its own --nproc-per-node): WORLD_SIZE tells them.
    argv = ["run", "--seed", str(args.seed), "--output", args.output,
            "--stage0-seed", str(args.stage0_seed)] + (["--device", args.device] if args.device else [])
    argv += [f"--{n.replace('_', '-')}={getattr(args, n)}" for n in ("stage1_epochs", "stage2_epochs")
             if getattr(args, n) is not None]
    argv += [f"--{n.replace('_', '-')}" for n in ("quick", "from_scratch", "no_progress") if getattr(args, n)]
    return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={args.nproc}", "-m", "tutor_lib", *argv])


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .distributed import launched_by_torchrun, run_distributed
    from .pipeline import RunConfig, run_pipeline
    from .runtime import quick_mode

    if args.nproc > 1 and not launched_by_torchrun():
        return _torchrun(args)

    cfg = RunConfig(seed=args.seed, device=args.device, output=args.output, progress=not args.no_progress,
                    from_scratch=args.from_scratch, stage0_seed=args.stage0_seed)
    if args.quick or quick_mode():  # one switch to run small: --quick here, TUTOR_QUICK=1 everywhere
        cfg = cfg.quick()
    epochs = {name: getattr(args, name) for name in ("stage1_epochs", "stage2_epochs") if getattr(args, name) is not None}
    (run_distributed if launched_by_torchrun() else run_pipeline)(replace(cfg, **epochs))
    return 0


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="rebuild stage 0: pretrain the language model on text and the vision encoder CLIP-style")
    p.add_argument("--seed", type=_non_negative_int, default=42, help="random seed (default 42)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: CUDA, then MPS, then CPU)")
    p.add_argument("--image-size", type=_positive_int, default=64,
                   help="image size of the model to pretrain for (default 64; notebook 07's experiments use 32)")
    p.add_argument("--output", default=None, help="folder for the weights (default: $TUTOR_CACHE or ~/.cache/tutor_lib)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(handler=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .model import ModelConfig
    from .pretrain import build_stage0, cache_dir, save_stage0, weights_name
    from .runtime import pick_device

    cfg = ModelConfig(image_size=args.image_size)
    if args.image_size % cfg.patch_size:
        raise ValueError(f"--image-size must be a multiple of the patch size {cfg.patch_size}, got {args.image_size}")
    device = pick_device(args.device)
    print(f"Stage 0 on {device}, seed {args.seed}, {args.image_size}x{args.image_size} images")
    weights = build_stage0(cfg, seed=args.seed, device=device, progress=not args.no_progress)
    info = weights["info"]
    path = save_stage0(weights, Path(args.output) if args.output else cache_dir(), weights_name(cfg, seed=args.seed))
    for part, losses in info["losses"].items():
        print(f"  {part:<15} loss {losses[0]:.3f} -> {losses[-1]:.4f} in {info['seconds'][part]:.1f} s")
    print(f"wrote {path}")
    return 0


DB_HELP = ("gradebook SQLAlchemy URL, e.g. postgresql://grader@dbhost/llava (default: c.CourseDirectory.db_url "
           "of nbgrader_config.py, else sqlite gradebook.db in the course)")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _add_release(sub) -> None:
    p = sub.add_parser("release", help="regenerate notebooks/ from solutions/ with nbgrader")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all in solutions/)")
    p.add_argument("--course-dir", default=None, help="course folder (default: found from the working directory)")
    p.add_argument("--no-db", action="store_true", help="do not record the assignments in the gradebook")
    p.add_argument("--db", default=None, help=DB_HELP)
    p.add_argument("--repo-url", default=None,
                   help="the git repository students' Colab notebooks install tutor_lib from (stored in pyproject.toml)")
    p.add_argument("--ref", default=None, help="branch, tag or commit of --repo-url to install (stored; default main)")
    p.set_defaults(handler=_release)


def _release(args: argparse.Namespace) -> int:
    from .course import generate_releases
    from .grading.gradebook import check_gradebook, resolve_db_url, shown

    root = _course_root(args)
    db_url = None if args.no_db else resolve_db_url(root, args.db)
    if db_url:
        check_gradebook(db_url)
    try:
        _colab_setting(root, args)
    except ValueError as error:
        print(f"tutor release: {error}", file=sys.stderr)
        return 2
    for path in generate_releases(root, args.assignments or None, db_url=db_url):
        print(f"wrote {path.relative_to(root)}")
    if db_url:
        print(f"recorded the assignments in the gradebook ({shown(db_url)})")
    return 0


def _colab_setting(root, args: argparse.Namespace) -> None:
    """Store --repo-url/--ref, then write them into every setup cell and the README's Colab badges."""
    from .colab import CourseSource, read_source, rewrite_readme, rewrite_setup_cells, validate, write_source
    from .course import list_assignments

    stored = read_source(root)
    source = validate(CourseSource(args.repo_url if args.repo_url is not None else stored.repo_url,
                                   args.ref or stored.ref))
    if source != read_source(root, origin=False):
        write_source(root, source)
    notebooks = [root / "solutions" / name / f"{name}.ipynb" for name in list_assignments(root)]
    for path in rewrite_setup_cells(notebooks, source):
        print(f"set the Colab install in {path.relative_to(root)}")
    readme = root / "README.md"
    if readme.exists():
        readme.write_text(rewrite_readme(readme.read_text(encoding="utf-8"), source), encoding="utf-8")
    if not source.repo_url:
        print("No repository URL: Colab notebooks cannot install tutor_lib. "
              "Set it with: tutor release --repo-url https://github.com/OWNER/REPO [--ref REF]")
    else:
        print(f"Colab notebooks install {source.pip_url}")


def _course_root(args: argparse.Namespace):
    from pathlib import Path

    from .course import find_course_root

    return find_course_root(Path(args.course_dir) if args.course_dir else None)


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number >= 1, got 0")
    return value


def _add_collect(sub) -> None:
    from .grading.collect import DEFAULT_PATTERN

    p = sub.add_parser("collect", help="import a zip or folder of LMS downloads into submitted/<student>/<assignment>/")
    p.add_argument("path", help="a .zip file or a folder of downloaded notebooks")
    p.add_argument("--pattern", default=DEFAULT_PATTERN,
                   help="regular expression searched in each file's path; its group (?P<student>...) is the student id, "
                        "an optional (?P<assignment>...) the assignment (default: the name before the first '_')")
    p.add_argument("--zip-timezone", default="UTC",
                   help="time zone of the file times in a zip, written to timestamp.txt for late penalties (default UTC)")
    p.add_argument("--course-dir", default=None, help="course folder (default: found from the working directory)")
    p.set_defaults(handler=_collect)


def _collect(args: argparse.Namespace) -> int:
    import re
    from pathlib import Path

    from .course import list_assignments
    from .grading.collect import collect

    root = _course_root(args)
    try:
        re.compile(args.pattern)
    except re.error as error:
        raise ValueError(f"--pattern is not a regular expression: {error}") from None
    source = Path(args.path)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    from datetime import timezone
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = timezone.utc if args.zip_timezone.upper() == "UTC" else ZoneInfo(args.zip_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--zip-timezone: unknown time zone {args.zip_timezone!r} (e.g. UTC, Europe/Berlin)") from None
    outcome = collect(source, root, list_assignments(root), args.pattern, zone)
    students = {dest.parent.parent.name for _, dest in outcome.placed}
    print(f"placed {_count(len(outcome.placed), 'notebook')} of {_count(len(students), 'student')} in submitted/"
          + (f"; the LMS marked {len(outcome.late)} LATE" if outcome.late else ""))
    if outcome.unplaced:
        print(f"could not place {_count(len(outcome.unplaced), 'file')}:")
        for name, reason in outcome.unplaced:
            print(f"  {name}: {reason}")
    if not outcome.placed:
        raise ValueError(f"no notebook in {source} could be placed (see the list above and --pattern)")
    return 0


def _add_grade(sub) -> None:
    from .grading import DEFAULT_TIMEOUT

    p = sub.add_parser("grade", help="autograde submitted/ in parallel; write grades.csv, grades.json and feedback/")
    p.add_argument("--student", action="append", default=None, help="grade only this student (repeatable)")
    p.add_argument("--assignment", action="append", default=None, help="grade only this assignment (repeatable)")
    p.add_argument("--workers", type=_positive_int, default=None, help="parallel worker processes (default: CPU cores)")
    p.add_argument("--db", default=None, help=DB_HELP)
    p.add_argument("--timeout", type=_positive_int, default=DEFAULT_TIMEOUT,
                   help=f"seconds one whole notebook may run (default {DEFAULT_TIMEOUT}); cells: Execute.timeout")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--course-dir", default=None, help="course folder (default: found from the working directory)")
    p.set_defaults(handler=_grade)


def _grade(args: argparse.Namespace) -> int:
    from .grading.runner import grade

    root = _course_root(args)
    run = grade(root, students=args.student, assignments=args.assignment, workers=args.workers, db_url=args.db,
                timeout=args.timeout, progress=not args.no_progress)
    for line in run.skipped:
        print(f"skipped {line}")
    failed = [e for e in run.entries if e["status"] != "graded"]
    print(f"graded {_count(len(run.entries), 'notebook')} in {run.seconds:.0f} s with {_count(run.workers, 'worker')}: "
          f"{len(run.entries) - len(failed)} graded, {len(failed)} not graded")
    for entry in failed:
        print(f"  {entry['student']}/{entry['assignment']}: {entry['status']}")
    for error in run.errors:
        print(f"grader error in {error}", file=sys.stderr)
    if run.errors:
        print("the workers' log is .nbgrader.log in the course folder", file=sys.stderr)
    csv_path, json_path = run.report
    print(f"wrote {csv_path.name}, {json_path.name} and feedback/<student>/<assignment>/ in {root}")
    if run.errors and len(run.errors) == len(run.entries):
        print("tutor grade: error: every submission failed inside the grader (see above)", file=sys.stderr)
        return 1
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="grades.csv and grades.json for the whole gradebook (all graders), without grading")
    p.add_argument("--db", default=None, help=DB_HELP)
    p.add_argument("--output", default=None, help="folder for grades.csv and grades.json (default: the course folder)")
    p.add_argument("--course-dir", default=None, help="course folder (default: found from the working directory)")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .grading.runner import report

    root = _course_root(args)
    output = Path(args.output) if args.output else root
    output.mkdir(parents=True, exist_ok=True)
    entries, (csv_path, json_path) = report(root, db_url=args.db, output=output)
    graded = sum(e["status"] == "graded" for e in entries)
    pending = sum(bool(e["needs_manual_grading"]) for e in entries)
    print(f"{_count(len(entries), 'submission')} of {_count(len({e['student'] for e in entries}), 'student')}: "
          f"{graded} graded, {len(entries) - graded} not graded, {pending} with answers to grade by hand")
    print(f"wrote {csv_path} and {json_path}")
    return 0


def _add_setup(sub) -> None:
    p = sub.add_parser("setup", help="students: hide nbgrader's instructor tools, keep Validate, check the environment "
                                     "(no training)")
    p.add_argument("--course-dir", default=".", help="the course folder, with nbgrader_config.py (default: here)")
    p.add_argument("--keep-instructor-tools", action="store_true",
                   help="show the Formgrader and Create Assignment again in this environment")
    p.set_defaults(handler=_setup)


def _setup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .student import setup_student

    return setup_student(Path(args.course_dir).resolve(), keep_instructor_tools=args.keep_instructor_tools)


COMMANDS = [_add_setup, _add_run, _add_pretrain, _add_release, _add_collect, _add_grade, _add_report]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tutor", description="LLaVA-style instruction tuning on a shapes world: the course's tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError, RuntimeError) as error:  # bad values and unwritable folders: one line, no traceback
        print(f"tutor {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tutor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
