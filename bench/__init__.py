"""readroom-bench: each hot path measured against its comparison and its floor, side by side in one run."""
