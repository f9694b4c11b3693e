"""music_platform: listening data to personalised music recommendations."""

__version__ = "0.1.0"
