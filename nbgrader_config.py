"""nbgrader configuration for the course. The repository root is the course directory.

solutions/NN_x/NN_x.ipynb  (nbgrader "source": solutions and hidden tests)
notebooks/NN_x/NN_x.ipynb  (nbgrader "release": what students get; regenerate with `tutor release`)

`tutor grade` (tutor_lib/grading) reads this file too; the preprocessors named below by their
import paths come from tutor_lib.grading.preprocessors.
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "llava-shapes"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# The gradebook, for formgrader and `tutor` alike (`tutor grade --db URL` overrides it for one run).
# Default: SQLite gradebook.db in this folder. For several graders sharing one database, e.g.
# c.CourseDirectory.db_url = "postgresql://grader@dbhost/llava"   (pip install -e ".[postgres]")

# Late submissions: `tutor collect` writes each submission's upload time to timestamp.txt; set a due
# date per assignment in formgrader (Manage Assignments) and choose a penalty, e.g.
# c.LateSubmissionPlugin.penalty_method = "zero"   (nbgrader's default, "none", never deducts)

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Per-cell execution limits (nbgrader uses both names depending on the step). A cell that runs
# longer is interrupted (KeyboardInterrupt) and the rest of the notebook still runs; one that
# ignores the interrupt for GuardedExecute.interrupt_grace seconds makes the notebook "not graded".
c.Execute.timeout = 120
c.ExecutePreprocessor.timeout = 120
c.GuardedExecute.interrupt_grace = 10
# How long to wait for a cell's last output after it finishes. nbclient's default of 4 s crashed a
# whole Validate run on a busy machine after a cell was interrupted; 30 s costs nothing when quiet.
c.Execute.iopub_timeout = 30
c.ExecutePreprocessor.iopub_timeout = 30

# Output limits: lines per cell and traceback lines (nbgrader), characters per cell while it runs
# (GuardedExecute: an endless print loop cannot fill the grader's memory).
c.LimitOutput.max_lines = 500
c.LimitOutput.max_traceback = 100
c.GuardedExecute.max_output_chars = 100_000

# nbgrader scores a test cell 0 if it wrote anything to stderr. Allowed: warnings raised inside
# installed libraries (site-packages), each with the source line Python prints under it; nothing
# else. A warning raised by the student's own code, or any other stderr text, still counts.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = (
    r"\A(?:[^\n]*[/\\](?:site|dist)-packages[/\\][^\n]*:\d+: [A-Za-z]*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n)?)+\Z"
)

c.Autograde.autograde_preprocessors = [
    "tutor_lib.grading.preprocessors.GuardedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Feedback shows the student's outputs and scores, but no hidden test code (in sources, tracebacks
# or outputs that quote it).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "tutor_lib.grading.preprocessors.HideHiddenTests",
]
