"""python -m prototxt_tools: the prototxt command."""
from .cli import run

run()
