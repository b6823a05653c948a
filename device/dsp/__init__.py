"""Causal, streaming signal processing shared by the device and by training (``convert``).

Everything here keeps its state across calls, so feeding a signal in chunks of 1, 7 or 1000
samples gives bit-identical output, and nothing looks into the future (no ``filtfilt``):
what training sees is exactly what the ward's daemon computes. Each helper is defined once:

- ``filters``: Butterworth designs and ``CausalFilter`` (second-order sections, numpy only)
- ``gaps``: ``forward_fill`` and ``HoldGaps`` (missing samples held at the last value)
- ``resample``: ``Resampler`` (any ratio) and ``Decimator`` (every n-th sample)
- ``buffers``: ``RingBuffer``
- ``peaks``: ``find_peaks`` and sub-sample peak position
- ``quality``: spread, flat-line and sensor-off judgements
"""
