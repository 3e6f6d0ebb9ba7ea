"""Argument checks shared by the model constructors; each raises ValueError with a message for the config."""

from __future__ import annotations

from critical_periods.config.validation import not_allowed


def input_shape_of(
    input_shape: tuple[int, ...],
    rank: int | None = None,
    message: str = "input_shape must be non-empty with positive sizes, got {shape}",
) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, with ``rank`` entries if one is given.

    Otherwise raises a ValueError whose text is ``message`` with ``{shape}`` filled in by the
    tuple, so a model that wants one rank can tell the user which model to use instead.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 0 or (rank is not None and len(shape) != rank) or min(shape) < 1:
        raise ValueError(message.format(shape=shape))
    return shape


def check_image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``input_shape`` as a (C, H, W) tuple of ints, or a ValueError saying what to use instead."""
    return input_shape_of(  # type: ignore[return-value]
        input_shape,
        rank=3,
        message=(
            f"{model} needs an image input_shape (C, H, W), got {{shape}}; "
            "use Conv1DNet for 1-D signals (C, L), or MLP for any shape"
        ),
    )


def num_classes_of(num_classes: int) -> int:
    """``num_classes`` unchanged if it is at least 1, else a ValueError."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return num_classes


def positive_int(name: str, value: int) -> int:
    """``value`` unchanged if it is at least 1, else a ValueError naming the argument ``name``."""
    if value < 1:
        raise not_allowed(name, value, "a whole number >= 1")
    return value
