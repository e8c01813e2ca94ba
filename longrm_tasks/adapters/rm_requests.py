"""The reward-model request contract lives in the core (`longrm_tasks.rm.requests`); this name is kept for callers."""
from longrm_tasks.rm.requests import MARKER, VERSION, decode_rm_context, encode_rm_context  # noqa: F401
