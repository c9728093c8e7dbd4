"""The Textual front-end: screens, widgets, and the poller that feeds them snapshots of a run."""
import os

# A screen redraws on Textual's frame timer, 60 a second by default: a key's redraw waited up to 17 ms for
# it. At 120 the wait halves (bench/tui_ingest.py: key->screen p99 under load 44-55 -> 29-35 ms); frames
# still come only when something changed, so idle and following CPU stay the same. Set before textual loads.
os.environ.setdefault("TEXTUAL_FPS", "120")
