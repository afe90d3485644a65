"""The progress bar of long training steps (tqdm, an optional dependency loaded on use)."""

__all__ = ["progress_bar"]


def progress_bar(total, desc, enabled):
    """A tqdm bar of ``total`` steps, or None when not ``enabled``."""
    if not enabled:
        return None
    from tqdm.auto import tqdm  # deferred: only progress bars need tqdm

    return tqdm(total=total, desc=desc, leave=False)
