import sys
from pathlib import Path

# The oracle module lives next to the tests.
sys.path.insert(0, str(Path(__file__).parent))
