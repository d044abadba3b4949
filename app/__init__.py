"""The Qt shell of the workstation and its command line.

Owns: the CLI dispatcher (`cli`), and the GUI: login, main window, worklist panel, layouts, report editor,
dictation wiring, settings, QA mode. The only place that wires the core packages together; nothing imports app.
"""
