"""The course kit: one module of exercise checkers per notebook, each run on the notebook's own objects.

A checker takes the learner's answer (``...`` or ``None`` while it is blank) and whatever the notebook computed
that the answer depends on, and returns a :class:`~cachesteer_lite.course.feedback.Feedback`: correct or not, and
a sentence that says what to look at. It never raises on a blank or malformed answer, so a student notebook with
blank exercises still runs to the end. ``make student`` (``scripts/course_editions.py``) turns the notebooks into
the student edition.
"""
