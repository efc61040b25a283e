"""Where an interrupted load stands: a small JSON file replaced atomically after each acknowledged batch."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file that cannot be used; the message says why and names the file."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Every item up to and including `line` of input `file_index` is written or rejected.

    `inputs` are the load's inputs as absolute paths (or `-`), so that a restart with other inputs is refused.
    `rows` counts the items handled from the start of the first input, including any skipped with `--skip`;
    `rejects_bytes` is how much of the rejects file belongs to those items, so a restart can cut off what a
    batch that was never acknowledged left there.
    """

    inputs: tuple[str, ...]
    file_index: int = 0
    line: int = 0
    rows: int = 0
    written: int = 0
    rejected: int = 0
    rejects_bytes: int = 0
    complete: bool = False

    def passed(self, file_index: int, line: int) -> bool:
        """Whether the item at this position was already handled."""
        return file_index < self.file_index or (file_index == self.file_index and line <= self.line)

    def describe(self) -> str:
        """Where the checkpoint stands, for people: `file:line (N rows)`."""
        name = self.inputs[self.file_index] if self.inputs else "-"
        return f"{'<stdin>' if name == '-' else name}:{self.line} ({self.rows} rows)"


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint stored at `path`, or None if there is no such file."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: {error.strerror}") from None
    except orjson.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path} is not JSON ({error}); delete it to start over") from None
    try:
        if data.pop("version") != VERSION:
            raise ValueError("unknown version")
        data.pop("file", None)  # written for people; `file_index` is what counts
        checkpoint = Checkpoint(**{**data, "inputs": tuple(data["inputs"])})
        numbers = (
            checkpoint.file_index,
            checkpoint.line,
            checkpoint.rows,
            checkpoint.written,
            checkpoint.rejected,
            checkpoint.rejects_bytes,
        )
        if not all(isinstance(n, int) and n >= 0 for n in numbers) or not all(
            isinstance(name, str) for name in checkpoint.inputs
        ):
            raise ValueError("a field has the wrong type")
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is not a load checkpoint ({error}); delete it to start over"
        ) from None
    return checkpoint


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the file atomically: a crash leaves the old checkpoint or the new one, never a torn one."""
    document = {
        "version": VERSION,
        "file": checkpoint.inputs[checkpoint.file_index] if checkpoint.inputs else None,
        **asdict(checkpoint),
    }
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
