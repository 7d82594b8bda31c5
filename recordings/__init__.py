"""Records: calls, transcript lines and recordings, stored as they happen."""

from recordings.privacy import mask_secrets
from recordings.recorder import StereoRecorder
from recordings.store import CallStore, CallView, ComplaintView, LineView

__all__ = ["CallStore", "CallView", "ComplaintView", "LineView", "StereoRecorder", "mask_secrets"]
