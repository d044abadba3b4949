"""Dictation: offline speech recognition for the report editor, without Qt.

Owns audio capture (:mod:`dictation.audio`), the Vosk streaming engine (:mod:`dictation.engine`), model
discovery (:mod:`dictation.models`), the voice-command grammar (:mod:`dictation.commands`), radiology text
normalisation (:mod:`dictation.normalize`) and the Qt-free apply layer (:mod:`dictation.apply`) that turns the
engine's plain events (:mod:`dictation.events`) into edits of a text target. The app adapts that target to its
report editor widget and shows the events; nothing here imports Qt or VTK.
"""
