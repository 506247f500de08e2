"""The instructor's side of the course: collect LMS downloads, autograde in parallel, report and feedback.

collect.py        LMS zip or folder -> submitted/<student>/<assignment>/ with timestamp.txt
runner.py         `tutor grade` and `tutor report`: templates, grading processes, single-writer merge, report
worker.py         one grading process: preflight, nbgrader autograde and feedback, in a private course folder
pool.py           running grading processes N at a time, with a deadline and a process-tree kill
preflight.py      reading a submission defensively; restoring deleted cells and grading metadata; notes for review
preprocessors.py  nbgrader preprocessors named in nbgrader_config.py (guarded execution, hidden-test-free feedback)
gradebook.py      which gradebook, opening it (one-line errors), merging results, scores
report.py         grades.json and grades.csv

Imports go one way: grading uses tutor_lib.course (the course folder, its config, in-process nbgrader).
"""

DEFAULT_TIMEOUT = 900  # seconds for a whole notebook (tutor grade --timeout); cells have Execute.timeout
