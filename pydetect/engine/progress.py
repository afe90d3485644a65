"""The progress bar of long training steps."""

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(total, desc, enabled):
    """A tqdm bar of ``total`` steps, or None when not ``enabled``."""
    if not enabled:
        return None
    return tqdm(total=total, desc=desc, leave=False)
