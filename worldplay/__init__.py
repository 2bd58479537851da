"""worldplay: a real-time interactive video world model with a mosaic patch memory."""

__version__ = "0.1.0"
