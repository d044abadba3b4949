"""Installation steps that run on a user's machine: first-run setup and the dictation model download."""
