"""The `tutor` command (also `python -m tutor_lib`).

    tutor run [--quick] [--device cpu] [--seed 42] [--stage1-epochs 30] [--stage2-epochs 50] [--output outputs]
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
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: CUDA if available, else CPU)")
    p.add_argument("--seed", type=_non_negative_int, default=42, help="random seed (default 42)")
    p.add_argument("--stage1-epochs", type=_non_negative_int, default=None, help="default 30 (2 with --quick)")
    p.add_argument("--stage2-epochs", type=_non_negative_int, default=None, help="default 50 (3 with --quick)")
    p.add_argument("--output", default="outputs", help="folder for figures and report.json (default outputs/)")
    p.add_argument("--quick", action="store_true", help="a few-second smoke run on a small dataset")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .pipeline import QUICK, RunConfig, run_pipeline

    overrides = dict(QUICK) if args.quick else {}
    for name in ("stage1_epochs", "stage2_epochs"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    cfg = RunConfig(seed=args.seed, device=args.device, output=args.output, progress=not args.no_progress, **overrides)
    run_pipeline(cfg)
    return 0


def _add_release(sub) -> None:
    p = sub.add_parser("release", help="regenerate notebooks/ from solutions/ with nbgrader")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all in solutions/)")
    p.add_argument("--course-dir", default=None, help="course folder (default: found from the working directory)")
    p.add_argument("--no-db", action="store_true", help="do not record the assignments in the gradebook")
    p.set_defaults(handler=_release)


def _release(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .course import find_course_root, generate_releases

    root = find_course_root(Path(args.course_dir) if args.course_dir else None)
    for path in generate_releases(root, args.assignments or None, use_db=not args.no_db):
        print(f"wrote {path.relative_to(root)}")
    return 0


COMMANDS = [_add_run, _add_release]


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
