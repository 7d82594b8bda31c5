"""Records: calls, transcript lines and recordings, stored as they happen."""

from recordings.recorder import StereoRecorder
from recordings.store import CallStore, CallView, LineView

__all__ = ["CallStore", "CallView", "LineView", "StereoRecorder"]
