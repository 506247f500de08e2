"""nbgrader configuration for the course. The repository root is the course directory.

solutions/NN_x/NN_x.ipynb  (nbgrader "source": solutions and hidden tests)
notebooks/NN_x/NN_x.ipynb  (nbgrader "release": what students get; regenerate with `tutor release`)
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "llava-shapes"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Per-cell execution limits (nbgrader uses both names depending on the step).
c.Execute.timeout = 120
c.ExecutePreprocessor.timeout = 120

# A submission whose graded cells were deleted gets them back from the gradebook.
c.OverwriteCells.add_missing_cells = True
