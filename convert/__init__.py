"""The model workshop: train HR/RR models on recordings, quantize them to TFLite with manifests.

Needs the ``[convert]`` extra (TensorFlow). It imports ``device``'s preprocessing
(``device.features``), so training windows are computed by the code that serves them.
"""
