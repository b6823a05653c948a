"""Rhythm-level detectors that run on each ECG lead: ventricular fibrillation/flutter and
ventricular tachycardia (``device.rhythm.vf``)."""

from __future__ import annotations

from device.rhythm.vf import RhythmFeatures, RhythmJudgement, RhythmModel, VentricularRhythm

__all__ = ["RhythmFeatures", "RhythmJudgement", "RhythmModel", "VentricularRhythm"]
