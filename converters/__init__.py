"""Student -> ONNX / ORT / TFLite files, their int8 recipes, and parity checks against torch.

Modules: ``spec`` (the export contract), ``calibration`` (one calibration protocol),
``onnx_export``, ``onnx_quant``, ``ort_mobile``, ``tf_albert`` + ``tflite_convert``, ``census``
(what a file holds in int8), ``parity``, ``convert`` (the stage: ``ConvertConfig``,
``run_convert``) and ``cli`` (``convert_command``). Nothing heavy is imported here.
"""
