"""Audio adapter: reading audio files and the audio tracks of videos, log-mel features, audio encoders,
labelled audio datasets (ESC-50 layout, spoken digits), paired video + audio clips with a procedural
audio-visual set, sound-texture statistics (McDermott & Simoncelli 2011) and the ambient-sound pretext
task (Owens et al., ECCV 2016), in which a visual network learns from sound.

Components are listed in ``components.py`` beside this file and imported on first lookup.
"""
