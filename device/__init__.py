"""bedside-edge device: the streaming core and the daemon that runs it on the appliance.

Nothing under ``device`` imports TensorFlow: on the appliance inference runs on LiteRT
(``ai-edge-litert``, or ``tflite-runtime`` where that is what is installed).
"""

__version__ = "0.1.0"
