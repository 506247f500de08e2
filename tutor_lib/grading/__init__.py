"""The instructor's side of the course: collect LMS downloads, autograde in parallel, report and feedback.

collect.py        LMS zip or folder -> submitted/<student>/<assignment>/
runner.py         `tutor grade`: templates, worker pool, single-writer merge, report
worker.py         one worker process: preflight, nbgrader autograde and feedback, in a private course folder
pool.py           starting, feeding and killing worker processes
preflight.py      reading a submission defensively; restoring deleted cells and grading metadata
preprocessors.py  nbgrader preprocessors named in nbgrader_config.py (guarded execution, hidden-test-free feedback)
gradebook.py      in-process nbgrader, template and course gradebooks, merging results
report.py         grades.json and grades.csv
"""

DEFAULT_TIMEOUT = 900  # seconds for a whole notebook (tutor grade --timeout); cells have Execute.timeout
