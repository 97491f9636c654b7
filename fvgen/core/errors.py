"""User-facing errors.

Every failure a user can cause (bad paths, unreadable images, views that do not register, a
missing checkpoint) is raised as :class:`FvgenError` with a one-line message; the CLI prints that
line and exits non-zero instead of showing a traceback.
"""


class FvgenError(Exception):
    """An error whose message is meant for the user, on one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
