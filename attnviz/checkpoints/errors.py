"""The one exception the checkpoint loader raises for anything wrong with the user's files."""
from __future__ import annotations

import os
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded, with a message fit to show the user as is.

    The message always names the file (or folder) and says what is wrong with it, e.g.
    ``Cannot load 'vit.pth': the file is damaged or incomplete (truncated download?)``.
    """

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"Cannot load '{self.path}': {problem}")
